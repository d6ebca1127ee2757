"""Start/stop lifecycle: name prefixes keep sims apart; stop, signals, a dead parent and cleanup leave nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from . import client as simclient
from .client import PACKAGE_ROOT
from .conftest import unique_name, wait_until


def sim_namespaces(prefix: str) -> set[str]:
    return {ns for ns in simclient.list_netns() if ns.startswith(prefix + "-")}


@pytest.fixture()
def spare(tmp_path):
    """Start extra sims in a test; whatever is left is stopped and cleaned afterwards."""
    started: list[str] = []

    def start(**kw) -> dict:
        name = unique_name("l")
        started.append(name)
        return simclient.start(name, str(tmp_path), **kw)

    try:
        yield start
    finally:
        for name in started:
            simclient.stop(name, str(tmp_path))
            simclient.cleanup(name)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.vpcsim", *args], cwd=PACKAGE_ROOT, capture_output=True,
                          text=True, timeout=60)


def test_two_sims_stay_apart_and_sigterm_cleans_up(sim, spare, tmp_path):
    other = spare(nodes=["t3.medium"])
    mine = sim_namespaces(sim.state["name"])
    theirs = sim_namespaces(other["name"])
    assert theirs == {f"{other['name']}-vpc", f"{other['name']}-inet", f"{other['name']}-n1"}
    assert not mine & theirs
    assert other["endpoint"] != sim.state["endpoint"]
    os.kill(other["pid"], signal.SIGTERM)
    wait_until(lambda: not simclient.pid_alive(other["pid"]), timeout=10, what="sim to exit on SIGTERM")
    assert sim_namespaces(other["name"]) == set()
    assert not os.path.exists(simclient.state_path(other["name"], str(tmp_path)))
    # The session sim is untouched.
    assert sim_namespaces(sim.state["name"]) == mine
    sim.refresh()


def test_stop_after_the_server_was_killed(spare, tmp_path):
    st = spare(nodes=["m5.large"])
    os.kill(st["pid"], signal.SIGKILL)
    wait_until(lambda: not simclient.pid_alive(st["pid"]), timeout=5, what="kill")
    assert sim_namespaces(st["name"])  # a crash leaves them behind ...
    r = cli("stop", "--name", st["name"], "--state-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert sim_namespaces(st["name"]) == set()  # ... and stop removes them from the state file's name
    assert not os.path.exists(simclient.state_path(st["name"], str(tmp_path)))


def test_sim_stops_when_the_watched_process_dies(spare):
    parent = subprocess.Popen(["sleep", "60"])
    try:
        st = spare(watch_pid=parent.pid)
        assert sim_namespaces(st["name"])
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: not simclient.pid_alive(st["pid"]), timeout=10, what="sim to notice its parent died")
    assert sim_namespaces(st["name"]) == set()


def test_cleanup_removes_only_the_prefix(sim):
    prefix = unique_name("c")
    made = [f"{prefix}-stray", f"{prefix}-n9", f"{prefix}x-other"]
    for ns in made:
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        # Through the shell wrapper, from another directory.
        r = subprocess.run([os.path.join(PACKAGE_ROOT, "tests/vpcsim/vpcsim"), "cleanup", "--prefix", prefix],
                           cwd="/", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert sim_namespaces(prefix) == set()
        assert f"{prefix}x-other" in simclient.list_netns()
        assert sim_namespaces(sim.state["name"])  # other sims untouched
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_bad_names_and_duplicates_are_refused(sim):
    r = cli("start", "--name", "Bad_Name", "--state-dir", sim.state_dir)
    assert r.returncode == 1 and "bad sim name" in r.stderr
    r = cli("start", "--name", sim.state["name"], "--state-dir", sim.state_dir)
    assert r.returncode == 1 and "already running" in r.stderr
    assert simclient.pid_alive(sim.state["pid"])


def test_cli_launch_node_and_env(sim):
    r = cli("launch-node", "--name", sim.state["name"], "--state-dir", sim.state_dir, "--type", "t3.micro",
            "--subnet", "b")
    assert r.returncode == 0, r.stderr
    import ipaddress
    import json

    node = json.loads(r.stdout)
    try:
        assert node["type"] == "t3.micro" and ipaddress.IPv4Address(node["primary_ip"]) in ipaddress.IPv4Network("10.0.16.0/20")
        env = cli("env", "--name", sim.state["name"], "--state-dir", sim.state_dir, "--node", node["name"]).stdout
        assert f"export AWS_EC2_METADATA_SERVICE_ENDPOINT={node['imds_endpoint']}" in env.splitlines()
        assert f"export AWS_ENDPOINT_URL_EC2={sim.state['endpoint']}" in env.splitlines()
        r = cli("launch-node", "--name", sim.state["name"], "--state-dir", sim.state_dir, "--type", "m99.huge")
        assert r.returncode == 1 and "unknown instance type" in r.stderr
    finally:
        sim.terminate_node(node["name"])
