"""IMDSv2 per node: token rules, every key ipamd reads, credentials EC2 accepts, the lag knob, netns access."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from .conftest import Imds, ec2_client, netns_run, wait_until


def put_token_status(endpoint: str, headers: dict[str, str]) -> int:
    req = urllib.request.Request(endpoint + "/latest/api/token", method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_token_rules(sim, nodes):
    node = nodes("m5.large")
    ep = node["imds_endpoint"]
    assert put_token_status(ep, {}) == 400
    assert put_token_status(ep, {"X-aws-ec2-metadata-token-ttl-seconds": "0"}) == 400
    assert put_token_status(ep, {"X-aws-ec2-metadata-token-ttl-seconds": "21601"}) == 400
    assert put_token_status(ep, {"X-aws-ec2-metadata-token-ttl-seconds": "abc"}) == 400
    assert put_token_status(ep, {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}) == 200
    imds = Imds(ep)
    assert imds.status("meta-data/instance-id", token=None)[0] == 401
    assert imds.status("meta-data/instance-id", token="not-a-token")[0] == 401
    short = imds.new_token(1)
    assert imds.status("meta-data/instance-id", token=short) == (200, node["instance_id"])
    time.sleep(1.2)
    assert imds.status("meta-data/instance-id", token=short)[0] == 401
    assert imds.status("meta-data/no-such-key")[0] == 404


def test_tokens_are_per_node(sim, nodes):
    a, b = nodes("m5.large"), nodes("m5.large")
    token_a = Imds(a["imds_endpoint"]).token
    assert Imds(b["imds_endpoint"]).status("meta-data/instance-id", token=token_a)[0] == 401


def test_every_key_ipamd_reads(sim, ec2, nodes):
    node = nodes("m5.large")
    imds = Imds(node["imds_endpoint"])
    assert imds.get("meta-data/instance-id") == node["instance_id"]
    assert imds.get("meta-data/instance-type") == "m5.large"
    assert imds.get("meta-data/placement/availability-zone") == node["az"]
    assert imds.get("meta-data/placement/region") == sim.state["region"]
    assert imds.get("meta-data/mac") == node["mac"]
    assert imds.get("meta-data/local-ipv4") == node["primary_ip"]
    top = imds.lines("meta-data/")
    assert {"instance-id", "mac", "network/", "placement/", "iam/"} <= set(top)
    assert imds.lines("meta-data/network/interfaces/macs/") == [node["mac"] + "/"]
    eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[node["primary_eni"]])["NetworkInterfaces"][0]
    subnet = next(s for s in sim.state["subnets"] if s["id"] == node["subnet_id"])
    p = f"meta-data/network/interfaces/macs/{node['mac']}/"
    assert imds.get(p + "interface-id") == node["primary_eni"]
    assert imds.get(p + "device-number") == "0"
    assert imds.get(p + "network-card") == "0"
    assert imds.get(p + "subnet-id") == node["subnet_id"]
    assert imds.get(p + "vpc-id") == sim.state["vpc"]["id"]
    assert imds.lines(p + "security-group-ids") == [g["GroupId"] for g in eni["Groups"]]
    assert imds.lines(p + "local-ipv4s") == [node["primary_ip"]]
    assert imds.get(p + "subnet-ipv4-cidr-block") == subnet["cidr"]
    assert imds.lines(p + "subnet-ipv6-cidr-blocks") == [subnet["ipv6_cidr"]]
    assert imds.lines(p + "vpc-ipv4-cidr-blocks") == [sim.state["vpc"]["cidr"]]
    assert imds.lines(p + "vpc-ipv6-cidr-blocks") == [sim.state["vpc"]["ipv6_cidr"]]
    for missing in ("ipv4-prefix", "ipv6s", "ipv6-prefix"):
        assert imds.status(p + missing)[0] == 404, missing
    listing = imds.lines(p)
    assert "local-ipv4s" in listing and "ipv4-prefix" not in listing


def test_imds_follows_ec2_changes(sim, ec2, ec2x, nodes):
    node = nodes("m5.large")
    imds = Imds(node["imds_endpoint"])
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=1)
    ips = [a["PrivateIpAddress"] for a in ec2.assign_private_ip_addresses(
        NetworkInterfaceId=eni["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=2)["AssignedPrivateIpAddresses"]]
    prefixes = [a["Ipv4Prefix"] for a in ec2.assign_private_ip_addresses(
        NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=2)["AssignedIpv4Prefixes"]]
    v6 = ec2x.assign_ipv6_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv6AddressCount=1)["AssignedIpv6Addresses"]
    v6p = ec2x.assign_ipv6_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv6PrefixCount=1)["AssignedIpv6Prefixes"]
    # The attached ENI shows once its attachment has completed (1 s by default).
    wait_until(lambda: len(imds.lines("meta-data/network/interfaces/macs/")) == 2, timeout=5, what="second MAC")
    assert imds.lines("meta-data/network/interfaces/macs/") == [node["mac"] + "/", eni["MacAddress"] + "/"]
    p = f"meta-data/network/interfaces/macs/{eni['MacAddress']}/"
    assert imds.get(p + "device-number") == "1"
    assert imds.get(p + "interface-id") == eni["NetworkInterfaceId"]
    assert imds.lines(p + "local-ipv4s") == [eni["PrivateIpAddress"]] + ips
    assert imds.lines(p + "ipv4-prefix") == prefixes
    assert imds.lines(p + "ipv6s") == v6
    assert imds.lines(p + "ipv6-prefix") == v6p
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], PrivateIpAddresses=ips[:1],
                                      Ipv4Prefixes=prefixes[:1])
    assert imds.lines(p + "local-ipv4s") == [eni["PrivateIpAddress"]] + ips[1:]
    assert imds.lines(p + "ipv4-prefix") == prefixes[1:]


def test_credentials_are_temporary_and_accepted_by_ec2(sim, nodes):
    node = nodes("m5.large")
    imds = Imds(node["imds_endpoint"])
    role = imds.get("meta-data/iam/security-credentials/")
    assert role == sim.state["iam_role"]
    creds = json.loads(imds.get("meta-data/iam/security-credentials/" + role))
    assert creds["Code"] == "Success" and creds["Token"]
    expiry = time.mktime(time.strptime(creds["Expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert expiry > time.time() + 3600
    ec2 = ec2_client(sim.state, key=creds["AccessKeyId"], secret=creds["SecretAccessKey"], token=creds["Token"])
    got = ec2.describe_instances(InstanceIds=[node["instance_id"]])["Reservations"][0]["Instances"][0]
    assert got["InstanceId"] == node["instance_id"]
    wrong = ec2_client(sim.state, key=creds["AccessKeyId"], secret=creds["SecretAccessKey"], token="bogus")
    with pytest.raises(Exception) as e:
        wrong.describe_instances()
    assert "AuthFailure" in str(e.value) or "InvalidToken" in str(e.value) or "InvalidClientTokenId" in str(e.value)


def test_lag_knob_delays_changes(sim, ec2, nodes):
    node = nodes("m5.large")
    imds = Imds(node["imds_endpoint"])
    p = f"meta-data/network/interfaces/macs/{node['mac']}/local-ipv4s"
    sim.set_imds_lag(1.5, node["name"])
    try:
        time.sleep(0.3)  # the current view is older than the lag once recorded
        before = imds.lines(p)
        new = ec2.assign_private_ip_addresses(NetworkInterfaceId=node["primary_eni"], SecondaryPrivateIpAddressCount=1)
        ip = new["AssignedPrivateIpAddresses"][0]["PrivateIpAddress"]
        t0 = time.time()
        assert imds.lines(p) == before
        wait_until(lambda: ip in imds.lines(p), timeout=5, what="IMDS to show the new address")
        assert time.time() - t0 >= 1.0
    finally:
        sim.set_imds_lag(0, node["name"])
    assert ip in imds.lines(p)


def test_imds_inside_node_namespace(sim, nodes):
    node = nodes("m5.large")
    code = (
        "import urllib.request as u;"
        "t=u.urlopen(u.Request('http://169.254.169.254/latest/api/token',method='PUT',"
        "headers={'X-aws-ec2-metadata-token-ttl-seconds':'60'})).read().decode();"
        "print(u.urlopen(u.Request('http://169.254.169.254/latest/meta-data/instance-id',"
        "headers={'X-aws-ec2-metadata-token':t})).read().decode())"
    )
    r = netns_run(node["namespace"], "python3", "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == node["instance_id"]


def test_imds_faults(sim, nodes):
    node = nodes("m5.large")
    imds = Imds(node["imds_endpoint"])
    sim.add_imds_fault(node["name"], path="meta-data/network/", status=500, count=2)
    try:
        assert imds.status("meta-data/instance-id") == (200, node["instance_id"])
        mac_path = "meta-data/network/interfaces/macs/"
        assert imds.status(mac_path)[0] == 500
        assert imds.status(mac_path)[0] == 500
        assert imds.status(mac_path) == (200, node["mac"] + "/")
        sim.add_imds_fault(node["name"], latency_ms=300, count=1)
        t0 = time.time()
        assert imds.status("meta-data/instance-id")[0] == 200
        assert time.time() - t0 >= 0.3
    finally:
        sim.clear_imds_faults()
