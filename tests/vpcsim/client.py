"""Start, stop and drive a VPC-in-a-box from Python (the CLI and the pytest suite use this module)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

DEFAULT_STATE_DIR = os.environ.get("VPCSIM_STATE_DIR", "/tmp/vpcsim")
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SimError(Exception):
    pass


def state_path(name: str, state_dir: str = DEFAULT_STATE_DIR) -> str:
    return os.path.join(state_dir, f"{name}.json")


def read_state(name: str, state_dir: str = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    try:
        with open(state_path(name, state_dir)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists": look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start(
    name: str,
    state_dir: str = DEFAULT_STATE_DIR,
    region: str = "us-west-2",
    netns: bool = True,
    nodes: list[str] | None = None,
    watch_pid: int | None = None,
    timeout: float = 60.0,
    policy: str = "seed001",
    seed: int | None = None,
    allocation: str = "scattered",
    attach_delay: float | None = None,
) -> dict[str, Any]:
    """Spawns the sim as a detached process and returns its state once it is ready."""
    validate_name(name)
    os.makedirs(state_dir, exist_ok=True)
    old = read_state(name, state_dir)
    if old and pid_alive(int(old.get("pid", 0))):
        raise SimError(f"a sim named {name!r} is already running (pid {old['pid']}); stop it first")
    cleanup(name)
    try:
        os.unlink(state_path(name, state_dir))
    except FileNotFoundError:
        pass
    logfile = os.path.join(state_dir, f"{name}.log")
    cmd = [sys.executable, "-m", "tests.vpcsim", "serve", "--name", name, "--state-dir", state_dir, "--region", region,
           "--policy", policy]
    if not netns:
        cmd.append("--no-netns")
    if seed is not None:
        cmd += ["--seed", str(seed)]
    cmd += ["--allocation", allocation]
    if attach_delay is not None:
        cmd += ["--attach-delay", str(attach_delay)]
    if watch_pid:
        cmd += ["--watch-pid", str(watch_pid)]
    for n in nodes or []:
        cmd += ["--node", n]
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=PACKAGE_ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = read_state(name, state_dir)
        if st and st.get("ready") and st.get("pid") == proc.pid and len(st.get("nodes", [])) >= len(nodes or []):
            return st
        if proc.poll() is not None:
            raise SimError(f"vpcsim {name} exited with {proc.returncode} during start; see {logfile}:\n{tail(logfile)}")
        time.sleep(0.05)
    proc.kill()
    cleanup(name)
    raise SimError(f"vpcsim {name} not ready after {timeout}s; see {logfile}")


def tail(path: str, n: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except FileNotFoundError:
        return ""


def validate_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-z][a-z0-9]{0,31}", name):
        raise SimError(
            f"bad sim name {name!r}: use 1-32 lowercase letters/digits starting with a letter "
            "(it prefixes namespace names such as <name>-vpc)"
        )


def stop(name: str, state_dir: str = DEFAULT_STATE_DIR, timeout: float = 10.0, keep_log: bool = False) -> None:
    """Stops the sim and removes everything it made (its log too, unless `keep_log`), even if its process died."""
    st = read_state(name, state_dir)
    pid = int(st["pid"]) if st and st.get("pid") else None
    if st and pid and pid_alive(pid):
        try:
            http("POST", st["control_url"] + "/shutdown", {}, timeout=2, token=st.get("control_token"))
        except Exception:  # noqa: BLE001 - fall back to signals
            pass
        deadline = time.time() + timeout
        while pid_alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not pid_alive(pid):
                break
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            t = time.time() + 3
            while pid_alive(pid) and time.time() < t:
                time.sleep(0.05)
    cleanup(name)
    leftovers = [state_path(name, state_dir)] + ([] if keep_log else [os.path.join(state_dir, f"{name}.log")])
    for path in leftovers:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def list_netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def cleanup(prefix: str) -> list[str]:
    """Deletes every namespace named `<prefix>-...` (links inside go with them). Returns what was removed."""
    removed = []
    for ns in list_netns():
        if ns.startswith(prefix + "-"):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            removed.append(ns)
    return removed


TOKEN_HEADER = "X-Vpcsim-Token"


def http(method: str, url: str, body: Any = None, timeout: float = 30.0, token: str | None = None) -> Any:
    """One control-API request; `token` is the sim's control token (state file field control_token)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers[TOKEN_HEADER] = token
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")
        raise SimError(f"{method} {url} -> {e.code}: {detail}") from None


class Client:
    """The control API of a running sim."""

    def __init__(self, state: dict[str, Any]):
        self.state = state
        self.base = state["control_url"]
        self.token = state.get("control_token")

    def http(self, method: str, url: str, body: Any = None, timeout: float = 30.0) -> Any:
        return http(method, url, body, timeout=timeout, token=self.token)

    @classmethod
    def named(cls, name: str, state_dir: str = DEFAULT_STATE_DIR) -> "Client":
        st = read_state(name, state_dir)
        if st is None:
            raise SimError(f"no state file for sim {name!r} in {state_dir}")
        return cls(st)

    def refresh(self) -> dict[str, Any]:
        self.state = self.http("GET", self.base + "/state")
        return self.state

    def launch_node(self, instance_type: str = "m5.large", subnet: str | None = None, name: str | None = None) -> Any:
        spec: dict[str, Any] = {"type": instance_type}
        if subnet:
            spec["subnet"] = subnet
        if name:
            spec["name"] = name
        return self.http("POST", self.base + "/nodes", spec, timeout=60)

    def terminate_node(self, name: str) -> Any:
        return self.http("DELETE", f"{self.base}/nodes/{name}")

    def add_subnet(self, cidr: str, az: str | None = None, ipv6: bool = True, name: str | None = None) -> Any:
        return self.http("POST", self.base + "/subnets", {"cidr": cidr, "az": az, "ipv6": ipv6, "name": name})

    def add_fault(self, action: str = "*", **kw: Any) -> Any:
        return self.http("POST", self.base + "/faults", dict(kw, action=action))

    def clear_faults(self) -> Any:
        return self.http("DELETE", self.base + "/faults")

    def faults(self) -> Any:
        return self.http("GET", self.base + "/faults")

    def calls(self, action: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        q = f"?since={since}" + (f"&action={action}" if action else "")
        return self.http("GET", self.base + "/calls" + q)

    def clear_calls(self) -> Any:
        return self.http("DELETE", self.base + "/calls")

    def set_imds_lag(self, seconds: float, node: str | None = None) -> Any:
        body: dict[str, Any] = {"seconds": seconds}
        if node:
            body["node"] = node
        return self.http("POST", self.base + "/imds/lag", body)

    def add_imds_fault(self, node: str | None = None, path: str = "", **kw: Any) -> Any:
        """kw: status (HTTP), latency_ms, drop, count; path: prefix below /latest/ (e.g. "meta-data/network/")."""
        return self.http("POST", self.base + "/imds/faults", dict(kw, node=node, path=path))

    def clear_imds_faults(self) -> Any:
        return self.http("DELETE", self.base + "/imds/faults")

    def set_detach_delay(self, seconds: float) -> Any:
        return self.http("POST", self.base + "/ec2/detach-delay", {"seconds": seconds})

    def set_attach_delay(self, seconds: float) -> Any:
        return self.http("POST", self.base + "/ec2/attach-delay", {"seconds": seconds})

    def set_allocation(self, mode: str, seed: int | None = None) -> Any:
        """mode "scattered" (EC2's way; `seed` makes it reproducible) or "lowest" (lowest free first)."""
        body: dict[str, Any] = {"mode": mode}
        if seed is not None:
            body["seed"] = seed
        return self.http("POST", self.base + "/ec2/allocation", body)

    def ec2_settings(self) -> Any:
        return self.http("GET", self.base + "/ec2/settings")

    def drops(self) -> Any:
        """Packets dropped so far: {"source_dest_check": N, "internet_gateway": N}."""
        return self.http("GET", self.base + "/network/drops")

    def sync(self) -> Any:
        return self.http("POST", self.base + "/sync", {})

    def internet_peers(self) -> list[dict[str, Any]]:
        return self.http("GET", self.base + "/internet/peers")

    def clear_internet_peers(self) -> Any:
        return self.http("DELETE", self.base + "/internet/peers")

    def service_account_token(self, audience: str | None = None, subject: str | None = None,
                              seconds: int | None = None, issued_offset_seconds: float = 0) -> str:
        """A service-account JWT from the sim's issuer (audience sts.amazonaws.com unless given; subject aws-node)."""
        body: dict[str, Any] = {"issued_offset_seconds": issued_offset_seconds}
        if audience:
            body["audience"] = audience
        if subject:
            body["subject"] = subject
        if seconds is not None:
            body["seconds"] = seconds
        return self.http("POST", self.base + "/identity/token", body)["token"]
