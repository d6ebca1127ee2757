"""Fault injection and the EC2 call log, through the control API, the Python client and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import botocore.exceptions
import pytest

from .client import PACKAGE_ROOT
from .conftest import raw_call


@pytest.fixture()
def faults(sim):
    sim.clear_faults()
    try:
        yield sim
    finally:
        sim.clear_faults()


def test_error_for_the_next_n_calls_then_normal(faults, ec2):
    faults.add_fault("DescribeInstances", code="RequestLimitExceeded", count=2)
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.describe_instances()
        assert e.value.response["Error"]["Code"] == "RequestLimitExceeded"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    ec2.describe_instances()
    ec2.describe_network_interfaces(MaxResults=5)  # other actions were never affected
    (f,) = faults.faults()
    assert f["hits"] == 2 and f["count"] == 0


def test_injected_error_has_ec2_xml_shape_and_status(faults):
    faults.add_fault("DescribeNetworkInterfaces", code="InternalError", status=500, message="boom", count=1)
    status, body = raw_call(faults.state, "DescribeNetworkInterfaces", {})
    assert status == 500
    assert "<Response><Errors><Error><Code>InternalError</Code><Message>boom</Message></Error></Errors>" in body
    assert "<RequestID>" in body


def test_latency(faults, ec2):
    faults.add_fault("DescribeInstances", latency_ms=400, count=1)
    t0 = time.time()
    ec2.describe_instances()
    slow = time.time() - t0
    t0 = time.time()
    ec2.describe_instances()
    fast = time.time() - t0
    assert slow >= 0.4
    assert fast < slow


def test_dropped_connection(faults, ec2):
    faults.add_fault("DescribeInstances", drop=True, count=1)
    with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)):
        ec2.describe_instances()
    ec2.describe_instances()
    dropped = [c for c in faults.calls("DescribeInstances") if c.get("error") == "dropped"]
    assert len(dropped) == 1 and dropped[0]["status"] == 0


def test_fraction_of_calls(faults, ec2):
    faults.add_fault("DescribeInstances", code="RequestLimitExceeded", probability=0.5)
    failures = 0
    for _ in range(60):
        try:
            ec2.describe_instances()
        except botocore.exceptions.ClientError:
            failures += 1
    # Binomial(60, 0.5): outside 10..50 has probability < 1e-7.
    assert 10 <= failures <= 50


def test_wildcard_fault_applies_to_every_action(faults, ec2):
    faults.add_fault("*", code="Unavailable", count=2)
    for call in (ec2.describe_instances, ec2.describe_network_interfaces):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "Unavailable"
    ec2.describe_instances()


def test_bad_fault_spec_is_rejected(faults):
    from .client import SimError

    with pytest.raises(SimError, match="a fault needs one of"):
        faults.add_fault("DescribeInstances")
    with pytest.raises(SimError, match="probability"):
        faults.add_fault("DescribeInstances", code="X", probability=2)


def test_call_log_records_action_parameters_and_time(sim, ec2, nodes):
    last = max([c["seq"] for c in sim.calls()] or [0])
    node = nodes("m5.large")
    t0 = time.time()
    ec2.assign_private_ip_addresses(NetworkInterfaceId=node["primary_eni"], SecondaryPrivateIpAddressCount=1)
    with pytest.raises(botocore.exceptions.ClientError):
        ec2.assign_private_ip_addresses(NetworkInterfaceId="eni-00000000000000000", SecondaryPrivateIpAddressCount=1)
    calls = sim.calls(action="AssignPrivateIpAddresses", since=last)
    assert [c["params"]["NetworkInterfaceId"] for c in calls] == [node["primary_eni"], "eni-00000000000000000"]
    assert calls[0]["params"]["SecondaryPrivateIpAddressCount"] == "1"
    assert calls[0]["status"] == 200 and "error" not in calls[0]
    assert calls[1]["status"] == 400 and calls[1]["error"] == "InvalidNetworkInterfaceID.NotFound"
    assert all(t0 - 1 <= c["time"] <= time.time() + 1 for c in calls)
    assert all(c["access_key_id"] == sim.state["access_key_id"] for c in calls)
    # The sim's own calls (launching nodes) are not in the log: it counts what clients do.
    assert not sim.calls(action="RunInstances", since=last)


def run_cli(sim, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "tests.vpcsim", *args, "--name", sim.state["name"], "--state-dir", sim.state_dir],
        cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cli_fault_and_call_count(faults, ec2):
    out = json.loads(run_cli(faults, "fault", "--action", "DescribeInstanceTypes", "--code", "RequestLimitExceeded",
                             "--count", "1"))
    assert out["status"] == 503 and out["count"] == 1
    before = int(run_cli(faults, "calls", "--action", "DescribeInstanceTypes", "--count"))
    with pytest.raises(botocore.exceptions.ClientError):
        ec2.describe_instance_types(InstanceTypes=["m5.large"])
    ec2.describe_instance_types(InstanceTypes=["m5.large"])
    assert int(run_cli(faults, "calls", "--action", "DescribeInstanceTypes", "--count")) == before + 2
    run_cli(faults, "faults", "--clear")
    assert faults.faults() == []
