"""The VPC-in-a-box demo: two nodes, ipamd on each, pods that reach each other and the outside.

Run by scripts/demo (as root, after scripts/setup and a release build). Everything it makes is
removed at the end, also on Ctrl-C or an error: the pods (CNI DEL), ipamd (SIGTERM), the sim.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.vpcsim import client as vpcsim  # noqa: E402

PODS_PER_NODE = 12
NAME = f"demo{os.getpid()}"


def say(msg: str) -> None:
    print(msg, flush=True)


class Node:
    """ipamd on one sim node, and the pods it networks through the aws-cni plugin."""

    def __init__(self, info: dict, binary: str, root: str):
        self.info = info
        self.ns = info["namespace"]
        self.dir = os.path.join(root, info["name"])
        os.makedirs(os.path.join(self.dir, "sbin"))
        self.agent = os.path.join(self.dir, "sbin", "aws-k8s-agent")
        os.symlink(binary, self.agent)
        self.env = dict(info["netns_env"])
        self.env.update({
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "AWS_VPC_K8S_CNI_BACKING_STORE": os.path.join(self.dir, "ipam.json"),
            "HOST_CNI_BIN_PATH": os.path.join(self.dir, "bin"),
            "HOST_CNI_CONFDIR_PATH": os.path.join(self.dir, "net.d"),
            "AWS_VPC_K8S_CNI_LOG_FILE": os.path.join(self.dir, "ipamd.log"),
            "AWS_VPC_K8S_PLUGIN_LOG_FILE": os.path.join(self.dir, "plugin.log"),
            "VPC_CNI_IPAMD_SOCKET": os.path.join(self.dir, "ipamd.sock"),
            "AWS_VPC_K8S_CNI_LOGLEVEL": "INFO",
        })
        self.proc: subprocess.Popen | None = None
        self.pods: list[dict] = []

    def start(self) -> float:
        began = time.monotonic()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, self.agent], env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "ipamd.stderr"), "w"))
        conflist = os.path.join(self.dir, "net.d", "10-aws.conflist")
        while not os.path.exists(conflist):
            if self.proc.poll() is not None:
                raise RuntimeError(f"ipamd on {self.info['name']} exited:\n{self.log()}")
            if time.monotonic() - began > 60:
                raise RuntimeError(f"ipamd on {self.info['name']} not ready in 60 s:\n{self.log()}")
            time.sleep(0.05)
        with open(conflist) as f:
            self.conflist = json.load(f)
        return time.monotonic() - began

    def log(self) -> str:
        out = ""
        for name in ("ipamd.log", "ipamd.stderr"):
            try:
                with open(os.path.join(self.dir, name)) as f:
                    out += f.read()[-3000:]
            except OSError:
                pass
        return out

    def plugin(self, command: str, pod: dict) -> dict:
        """One CNI call of our plugin, as a container runtime makes it."""
        conf = dict(self.conflist["plugins"][0])
        conf["cniVersion"] = self.conflist["cniVersion"]
        conf["name"] = self.conflist["name"]
        env = dict(self.env)
        env.update({
            "CNI_COMMAND": command, "CNI_CONTAINERID": pod["id"], "CNI_NETNS": f"/var/run/netns/{pod['ns']}",
            "CNI_IFNAME": "eth0", "CNI_PATH": os.path.join(self.dir, "bin"),
            "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod['name']};K8S_POD_INFRA_CONTAINER_ID={pod['id']}",
        })
        r = subprocess.run(["ip", "netns", "exec", self.ns, os.path.join(self.dir, "bin", "aws-cni")],
                           input=json.dumps(conf).encode(), env=env, capture_output=True)
        out = r.stdout.decode().strip()
        result = json.loads(out) if out else {}
        if r.returncode != 0:
            raise RuntimeError(f"CNI {command} of {pod['name']}: {result or r.stderr.decode()}")
        return result

    def add_pod(self, name: str) -> dict:
        pod = {"name": name, "id": f"demo-{name}", "ns": f"{NAME}-pod-{name}"}
        subprocess.run(["ip", "netns", "add", pod["ns"]], check=True)
        subprocess.run(["ip", "-n", pod["ns"], "link", "set", "lo", "up"], check=True)
        self.pods.append(pod)
        for attempt in range(40):
            try:
                result = self.plugin("ADD", pod)
                break
            except RuntimeError:
                if attempt == 39:
                    raise
                time.sleep(0.25)  # outside the warm pool: retry as the kubelet does
        pod["ip"] = result["ips"][0]["address"].split("/")[0]
        return pod

    def del_pods(self) -> None:
        for pod in self.pods:
            if "ip" in pod:
                try:
                    self.plugin("DEL", pod)
                except RuntimeError as e:
                    say(f"  {e}")
            subprocess.run(["ip", "netns", "del", pod["ns"]], stderr=subprocess.DEVNULL)
        self.pods.clear()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ping(pod: dict, ip: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", pod["ns"], "ping", "-c", "1", "-W", "3", "-q", ip],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def tcp_echo(pod: dict, ip: str, port: int) -> str:
    script = f"exec 3<>/dev/tcp/{ip}/{port} && echo hello >&3 && read -t 3 l <&3 && echo $l"
    r = subprocess.run(["ip", "netns", "exec", pod["ns"], "timeout", "5", "bash", "-c", script],
                       capture_output=True, text=True)
    return r.stdout.strip()


def eni_summary(sim_state: dict, instance_id: str, reader: str | None = None) -> list[dict]:
    """The node's ENIs through the EC2 API; `reader` names another IAM user of the sim's, so that
    these reads are not counted among ipamd's calls."""
    import boto3
    env = sim_state["env"]
    key, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    if reader:
        c = sim_state["credentials"][reader]
        key, secret = c["access_key_id"], c["secret_access_key"]
    ec2 = boto3.client("ec2", region_name=env["AWS_REGION"], endpoint_url=env["AWS_ENDPOINT_URL_EC2"],
                       aws_access_key_id=key, aws_secret_access_key=secret)
    enis = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["NetworkInterfaces"]
    enis.sort(key=lambda e: e["Attachment"]["DeviceIndex"])
    return enis


def main() -> int:
    binary = sys.argv[1]
    root = tempfile.mkdtemp(prefix="vpc-cni-demo-")
    nodes: list[Node] = []
    began = time.monotonic()

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        say("==> starting the VPC-in-a-box with two m5.large nodes")
        state = vpcsim.start(NAME, nodes=["m5.large", "m5.large"], watch_pid=os.getpid())
        sim = vpcsim.Client(state)
        say(f"    VPC {state['vpc']['cidr']}, EC2 (moto, SigV4 checked) at {state['endpoint']}, "
            f"internet at {state['internet']['outside_ip']}")
        sim.clear_calls()
        for info in state["nodes"]:
            node = Node(info, binary, root)
            nodes.append(node)
        say("==> ipamd on each node")
        for node in nodes:
            took = node.start()
            say(f"    {node.info['name']} ({node.info['instance_id']}, {node.info['primary_ip']}): ready in {took:.2f} s")
        say(f"==> {PODS_PER_NODE} pods per node through the aws-cni plugin")
        for node in nodes:
            for i in range(PODS_PER_NODE):
                node.add_pod(f"{node.info['name']}-{i}")
            say(f"    {node.info['name']}: " + " ".join(p["ip"] for p in node.pods))
        say("==> every pod pings a pod on the other node")
        a, b = nodes
        failures = 0
        for i, p in enumerate(a.pods):
            q = b.pods[(i * 5) % len(b.pods)]
            for src, dst in ((p, q), (q, p)):
                if not ping(src, dst["ip"]):
                    failures += 1
                    say(f"    FAILED {src['name']} ({src['ip']}) -> {dst['name']} ({dst['ip']})")
        say(f"    {2 * len(a.pods) - failures} of {2 * len(a.pods)} pings answered")
        say("==> pods reach the internet (TCP echo), translated to their node's address")
        sim.clear_internet_peers()
        outside = state["internet"]["outside_ip"]
        reached = 0
        for node in nodes:
            for p in node.pods[::4]:
                if tcp_echo(p, outside, 7) == "hello":
                    reached += 1
                else:
                    failures += 1
                    say(f"    FAILED {p['name']} -> {outside}:7")
        seen = collections.Counter((x.get("private_src"), x.get("src")) for x in sim.internet_peers())
        for (private, public), n in sorted(seen.items()):
            say(f"    internet saw {public} (node address {private}): {n} connections")
        say(f"    {reached} pods reached the internet")
        say("==> summary")
        state = sim.refresh()
        for node in nodes:
            enis = eni_summary(state, node.info["instance_id"], reader="extended")
            addrs = sum(len(e["PrivateIpAddresses"]) - 1 for e in enis)
            say(f"    {node.info['name']}: {len(enis)} ENIs, {addrs} secondary addresses, {len(node.pods)} pods")
            for e in enis:
                say(f"      device {e['Attachment']['DeviceIndex']} {e['NetworkInterfaceId']}: "
                    f"{len(e['PrivateIpAddresses']) - 1} addresses")
        keys = {n.env["AWS_ACCESS_KEY_ID"] for n in nodes}
        calls = collections.Counter(c["action"] for c in sim.calls()
                                    if c.get("service", "ec2") == "ec2" and c.get("access_key_id") in keys)
        say(f"    EC2 calls made by both ipamds: {sum(calls.values())} "
            + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())))
        say(f"==> done in {time.monotonic() - began:.1f} s; cleaning up")
        return 1 if failures else 0
    except KeyboardInterrupt:
        say("\n==> interrupted; cleaning up")
        return 130
    except Exception as e:  # noqa: BLE001 - the demo reports any failure and still cleans up
        say(f"demo failed: {e}")
        return 1
    finally:
        for node in nodes:
            node.del_pods()
            node.stop()
        try:
            vpcsim.stop(NAME)
        except Exception as e:  # noqa: BLE001
            say(f"stopping the sim: {e}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
