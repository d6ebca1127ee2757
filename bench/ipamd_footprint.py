"""ipamd's footprint and EC2 economy on the VPC-in-a-box.

Usage (root, after scripts/setup and a release build):
    .venv/bin/python bench/ipamd_footprint.py target/x86_64-unknown-linux-musl/release/vpc-cni

Measures, with the real daemon on sim nodes:
- time to ready and its split (own work vs waiting on IMDS/EC2), from ipamd's own log line;
- RSS (VmRSS, VmHWM) and threads idle, and with 100 and 250 pods (m5.16xlarge: max pods 250);
- EC2 calls the sim counted for 0 -> 40 -> 0 pods per warm mode on an m5.4xlarge (the pool
  shrinks back once ENIs are older than a minute and released addresses are cool).
Prints a JSON document of the figures on stdout.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import demo  # noqa: E402
from tests.vpcsim import client as vpcsim  # noqa: E402


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def ready_line(node: demo.Node) -> dict:
    m = re.search(r"ready in (\d+) ms: (\d+) ms own work, (\d+) ms waiting on IMDS, (\d+) ms on EC2", node.log())
    if not m:
        return {}
    total, own, imds, ec2 = map(int, m.groups())
    return {"total_ms": total, "own_ms": own, "imds_ms": imds, "ec2_ms": ec2}


def calls_by_action(sim: vpcsim.Client, since: int, key: str) -> dict:
    """ipamd's EC2 calls (signed with the node's key; the bench reads EC2 with another one)."""
    c = collections.Counter(x["action"] for x in sim.calls(since=since)
                            if x.get("service", "ec2") == "ec2" and x.get("access_key_id") == key)
    return dict(sorted(c.items()))


def last_seq(sim: vpcsim.Client) -> int:
    calls = sim.calls()
    return calls[-1]["seq"] if calls else 0


def eni_shape(state: dict, node: demo.Node) -> list:
    return [(len(e["PrivateIpAddresses"]) - 1, len(e.get("Ipv4Prefixes", [])))
            for e in demo.eni_summary(state, node.info["instance_id"], reader="extended")]


def settle(sim: vpcsim.Client, node: demo.Node, quiet: float, budget: float) -> list:
    """Waits until the node's EC2 shape has not changed for `quiet` seconds."""
    began = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - began < budget:
        shape = eni_shape(sim.refresh(), node)
        if shape != last:
            last, since = shape, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(1)
    return last


def main() -> int:
    binary = os.path.abspath(sys.argv[1])
    name = f"bench{os.getpid()}"
    root = f"/tmp/{name}"
    os.makedirs(root, exist_ok=True)
    result: dict = {"binary_bytes": os.path.getsize(binary)}
    state = vpcsim.start(name, nodes=[], watch_pid=os.getpid())
    sim = vpcsim.Client(state)
    nodes = []
    try:
        # Footprint: one m5.16xlarge node, 0 / 100 / 250 pods.
        info = sim.launch_node("m5.16xlarge")
        node = demo.Node(info, binary, root)
        nodes.append(node)
        node.env["AWS_VPC_K8S_CNI_LOGLEVEL"] = "INFO"
        node.start()
        time.sleep(6)
        pid = node.proc.pid
        result["ready"] = ready_line(node)
        result["idle"] = proc_status(pid)
        for target in (100, 250):
            while len(node.pods) < target:
                node.add_pod(f"p{len(node.pods)}")
            time.sleep(3)
            result[f"pods_{target}"] = proc_status(pid)
        node.del_pods()
        node.stop()
        nodes.clear()
        # EC2 calls per warm mode: 0 -> 40 -> 0 pods on an m5.4xlarge (8 ENIs x 29, max pods 110).
        modes = {
            "WARM_ENI_TARGET=1": {},
            "WARM_IP_TARGET=5,MINIMUM_IP_TARGET=10": {"WARM_IP_TARGET": "5", "MINIMUM_IP_TARGET": "10"},
            "PD,WARM_PREFIX_TARGET=1": {"ENABLE_PREFIX_DELEGATION": "true", "WARM_PREFIX_TARGET": "1"},
            "MAX_ENI=2": {"MAX_ENI": "2"},
        }
        result["ec2_calls_0_40_0"] = {}
        for label, env in modes.items():
            info = sim.launch_node("m5.4xlarge")
            node = demo.Node(info, binary, root)
            nodes.append(node)
            node.env.update(env)
            node.env["IP_COOLDOWN_PERIOD"] = "0"
            seq = last_seq(sim)
            node.start()
            idle = settle(sim, node, 8, 60)
            pods = 40 if label != "MAX_ENI=2" else 40
            for i in range(pods):
                try:
                    node.add_pod(f"{info['name']}-{i}")
                except RuntimeError:
                    break
            busy = settle(sim, node, 8, 60)
            node.del_pods()
            back = settle(sim, node, 75, 300)
            node.stop()
            nodes.remove(node)
            result["ec2_calls_0_40_0"][label] = {
                "calls": calls_by_action(sim, seq, node.env["AWS_ACCESS_KEY_ID"]),
                "idle": idle, "busy": busy, "after": back,
            }
    finally:
        for n in nodes:
            n.del_pods()
            n.stop()
        vpcsim.stop(name)
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
