"""Where the sim used to be kinder than EC2: each test here failed on the lenient sim and holds it to EC2's answer.

Source/destination check, the internet gateway's public-only rule, the SigV4 credential scope, prefix delegation on
Xen types, answers lost after the action ran, the `attaching` state, scattered allocation, DescribeInstances of a
Linux Nitro node, and the control API's token.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import pytest

from .conftest import Imds, links, netns_run, wait_until


def error_of(excinfo: pytest.ExceptionInfo) -> tuple[str, int]:
    e = excinfo.value
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def sh(ns: str, *argv: str) -> None:
    r = netns_run(ns, *argv)
    assert r.returncode == 0, (argv, r.stderr)


def free_address(ec2, eni_id: str) -> str:
    """An address of the ENI's subnet that no ENI holds: assigned, then unassigned again."""
    ip = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=1)[
        "AssignedPrivateIpAddresses"][0]["PrivateIpAddress"]
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=[ip])
    return ip


LISTEN = (
    "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',9999));"
    "s.settimeout(float(sys.argv[1]));print('ready',flush=True)\n"
    "try:\n d,a=s.recvfrom(100);print(a[0],flush=True)\nexcept OSError:\n print('none',flush=True)"
)
SEND = (
    "import socket,sys,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind((sys.argv[1],0))\n"
    "for _ in range(5):\n s.sendto(b'x',(sys.argv[2],9999));time.sleep(0.1)"
)


def udp_arrives(src_ns: str, src_ip: str, dst_ns: str, dst_ip: str) -> str | None:
    """Sends datagrams from `src_ip` (configured in `src_ns`); returns the source `dst_ns` saw, or None."""
    listener = subprocess.Popen(["ip", "netns", "exec", dst_ns, sys.executable, "-c", LISTEN, "2"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        sent = netns_run(src_ns, sys.executable, "-c", SEND, src_ip, dst_ip)
        assert sent.returncode == 0, sent.stderr
        got = listener.stdout.readline().strip()
    finally:
        listener.kill()
        listener.wait()
    return None if got in ("none", "") else got


def tcp_echo(ns: str, dst: str, port: int, src: str | None = None, timeout: float = 2.0) -> bool:
    code = (
        "import socket,sys;s=socket.socket();s.settimeout(float(sys.argv[3]))\n"
        "if sys.argv[4]: s.bind((sys.argv[4],0))\n"
        "s.connect((sys.argv[1],int(sys.argv[2])));s.sendall(b'echo');print(s.recv(4).decode())"
    )
    r = netns_run(ns, sys.executable, "-c", code, dst, str(port), str(timeout), src or "")
    return r.returncode == 0 and r.stdout.strip() == "echo"


# -- source/destination check -----------------------------------------------------------------------------------


def test_router_drops_sources_not_assigned_to_the_sending_eni(sim, ec2, nodes):
    n1, n2 = nodes("m5.large"), nodes("m5.large", "b")
    ns = n1["namespace"]
    sh(ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
    eni = ec2.create_network_interface(SubnetId=n1["subnet_id"], SecondaryPrivateIpAddressCount=1)["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=n1["instance_id"],
                                 DeviceIndex=1)
    wait_until(lambda: "eth1" in links(ns), timeout=5, what="eth1")
    sh(ns, "sysctl", "-qw", "net.ipv4.conf.eth1.rp_filter=0")
    secondary = [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"] if not a["Primary"]][0]
    stray = free_address(ec2, n1["primary_eni"])
    sim.sync()
    before = sim.drops()["source_dest_check"]
    # The ENI's own address passes.
    assert udp_arrives(ns, n1["primary_ip"], n2["namespace"], n2["primary_ip"]) == n1["primary_ip"]
    # An address no ENI holds, sent out of eth0: dropped by the VPC.
    sh(ns, "ip", "addr", "add", f"{stray}/32", "dev", "eth0")
    assert udp_arrives(ns, stray, n2["namespace"], n2["primary_ip"]) is None
    # eth1's address sent out of eth0 (no `from <ip> lookup <eni table>` rule): dropped too.
    sh(ns, "ip", "link", "set", "eth1", "up")
    sh(ns, "ip", "addr", "add", f"{secondary}/32", "dev", "eth1")
    assert udp_arrives(ns, secondary, n2["namespace"], n2["primary_ip"]) is None
    assert sim.drops()["source_dest_check"] > before
    # With the policy route a daemon installs, the same address leaves through its own ENI and arrives.
    sh(ns, "ip", "route", "add", "default", "via", "10.0.0.1", "dev", "eth1", "onlink", "table", "2")
    sh(ns, "ip", "rule", "add", "from", secondary, "lookup", "2")
    assert udp_arrives(ns, secondary, n2["namespace"], n2["primary_ip"]) == secondary
    # SourceDestCheck off (as for a NAT instance): the ENI may send any source.
    ec2.modify_network_interface_attribute(NetworkInterfaceId=n1["primary_eni"], SourceDestCheck={"Value": False})
    sim.sync()
    assert udp_arrives(ns, stray, n2["namespace"], n2["primary_ip"]) == stray
    ec2.modify_network_interface_attribute(NetworkInterfaceId=n1["primary_eni"], SourceDestCheck={"Value": True})
    sim.sync()
    assert udp_arrives(ns, stray, n2["namespace"], n2["primary_ip"]) is None


def test_prefix_addresses_pass_the_check_only_from_their_eni(sim, ec2, nodes):
    n1, n2 = nodes("m5.large"), nodes("m5.large", "b")
    prefix = ec2.assign_private_ip_addresses(NetworkInterfaceId=n1["primary_eni"], Ipv4PrefixCount=1)[
        "AssignedIpv4Prefixes"][0]["Ipv4Prefix"]
    pod = str(ipaddress.IPv4Network(prefix).network_address + 9)
    sim.sync()
    sh(n1["namespace"], "ip", "addr", "add", f"{pod}/32", "dev", "eth0")
    assert udp_arrives(n1["namespace"], pod, n2["namespace"], n2["primary_ip"]) == pod
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=n1["primary_eni"], Ipv4Prefixes=[prefix])
    sim.sync()
    assert udp_arrives(n1["namespace"], pod, n2["namespace"], n2["primary_ip"]) is None


# -- internet gateway ---------------------------------------------------------------------------------------------


def test_internet_gateway_carries_only_addresses_with_a_public_ip(sim, ec2, nodes):
    node = nodes("m5.large")
    inet = sim.state["internet"]
    assert ipaddress.IPv4Address(node["public_ip"]) in ipaddress.IPv4Network("198.51.100.0/24")
    secondary = ec2.assign_private_ip_addresses(NetworkInterfaceId=node["primary_eni"],
                                                SecondaryPrivateIpAddressCount=1)[
        "AssignedPrivateIpAddresses"][0]["PrivateIpAddress"]
    sim.sync()
    sh(node["namespace"], "ip", "addr", "add", f"{secondary}/32", "dev", "eth0")
    sim.clear_internet_peers()
    before = sim.drops()["internet_gateway"]
    # The node's primary address leaves translated to its public address.
    assert tcp_echo(node["namespace"], inet["outside_ip"], inet["echo_port"])
    # A private address without a public one (a pod's, not SNATed) never reaches the internet.
    assert not tcp_echo(node["namespace"], inet["outside_ip"], inet["echo_port"], src=secondary)
    assert sim.drops()["internet_gateway"] > before
    peers = sim.internet_peers()
    assert {(p["src"], p["private_src"], p["node"]) for p in peers} == {
        (node["public_ip"], node["primary_ip"], node["name"])}
    # The internet reaches the node at its public address.
    assert netns_run(inet["namespace"], "ping", "-c", "1", "-W", "2", node["public_ip"]).returncode == 0
    # ... and not at a private one.
    assert netns_run(inet["namespace"], "ping", "-c", "1", "-W", "1", node["primary_ip"]).returncode != 0


def test_public_ip_in_describe_instances_and_imds(sim, ec2, nodes):
    node = nodes("m5.large")
    inst = ec2.describe_instances(InstanceIds=[node["instance_id"]])["Reservations"][0]["Instances"][0]
    assert inst["PublicIpAddress"] == node["public_ip"]
    imds = Imds(node["imds_endpoint"])
    assert imds.get("meta-data/public-ipv4") == node["public_ip"]
    assert imds.get(f"meta-data/network/interfaces/macs/{node['mac']}/public-ipv4s") == node["public_ip"]


# -- SigV4 credential scope ---------------------------------------------------------------------------------------


def signed_call(st: dict, action: str, region: str, service: str) -> tuple[int, str]:
    body = {"Action": action, "Version": "2016-11-15"}
    req = botocore.awsrequest.AWSRequest(method="POST", url=st["endpoint"] + "/", data=body,
                                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    creds = botocore.credentials.Credentials(st["access_key_id"], st["secret_access_key"])
    botocore.auth.SigV4Auth(creds, service, region).add_auth(req)
    prepared = req.prepare()
    data = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    r = urllib.request.Request(prepared.url, data=data, method="POST", headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.parametrize("region,service", [("us-east-1", "ec2"), ("xx-nowhere-9", "ec2"), (None, "s3")])
def test_credential_scope_must_name_this_region_and_ec2(sim, region, service):
    region = region or sim.state["region"]
    last = max([c["seq"] for c in sim.calls()] or [0])
    status, body = signed_call(sim.state, "DescribeInstances", region, service)
    assert status == 401, body
    assert "<Code>AuthFailure</Code>" in body and "<Reservation" not in body
    (call,) = sim.calls(since=last)
    assert (call["action"], call["service"], call["status"], call["error"]) == (
        "DescribeInstances", service, 401, "AuthFailure")
    status, body = signed_call(sim.state, "DescribeInstances", sim.state["region"], "ec2")
    assert status == 200 and "<reservationSet" in body


# -- prefix delegation needs Nitro --------------------------------------------------------------------------------


def test_prefixes_are_refused_on_xen_instance_types(sim, ec2, nodes):
    node = nodes("t2.medium")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=node["primary_eni"], Ipv4PrefixCount=1)
    assert error_of(e) == ("InvalidParameterValue", 400)
    # Secondary addresses work as ever.
    ec2.assign_private_ip_addresses(NetworkInterfaceId=node["primary_eni"], SecondaryPrivateIpAddressCount=1)
    # An ENI holding a prefix cannot be attached to it either.
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"], Ipv4PrefixCount=1)["NetworkInterface"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node["instance_id"],
                                     DeviceIndex=1)
    assert error_of(e) == ("InvalidParameterValue", 400)
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[node["primary_eni"]])["NetworkInterfaces"][0]
    assert not got.get("Ipv4Prefixes")
    types = ec2.describe_instance_types(InstanceTypes=["t2.medium", "m5.large"])["InstanceTypes"]
    assert {t["InstanceType"]: t["Hypervisor"] for t in types} == {"t2.medium": "xen", "m5.large": "nitro"}


# -- the action ran, the answer was lost --------------------------------------------------------------------------


@pytest.fixture()
def faults(sim):
    sim.clear_faults()
    try:
        yield sim
    finally:
        sim.clear_faults()


def test_lost_answer_leaves_the_created_eni_behind(faults, ec2):
    sim = faults
    sub = next(s["id"] for s in sim.state["subnets"] if s["name"] == "a")
    tag = f"lost-{time.time_ns()}"
    sim.add_fault("CreateNetworkInterface", lose_answer=True, count=1)
    spec = {"ResourceType": "network-interface", "Tags": [{"Key": "lost", "Value": tag}]}
    with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)):
        ec2.create_network_interface(SubnetId=sub, TagSpecifications=[spec])
    left = ec2.describe_network_interfaces(Filters=[{"Name": "tag:lost", "Values": [tag]}])["NetworkInterfaces"]
    assert len(left) == 1 and left[0]["Status"] == "available"
    (call,) = [c for c in sim.calls("CreateNetworkInterface") if c.get("fault")][-1:]
    assert call["lost"] is True and call["status"] == 200 and "error" not in call
    ec2.delete_network_interface(NetworkInterfaceId=left[0]["NetworkInterfaceId"])


def test_lost_answer_of_an_attach_still_attaches(faults, ec2, nodes):
    sim = faults
    node = nodes("m5.large")
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]["NetworkInterfaceId"]
    sim.add_fault("AttachNetworkInterface", lose_answer=True, count=1)
    with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)):
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=node["instance_id"], DeviceIndex=1)
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    assert got["Attachment"]["InstanceId"] == node["instance_id"]
    # Retrying the same attach is now refused, as EC2 would.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=node["instance_id"], DeviceIndex=1)
    assert error_of(e) == ("InvalidNetworkInterface.InUse", 400)


def test_client_token_makes_a_retried_create_return_the_same_eni(faults):
    from .conftest import ec2_client, raw_call

    sim = faults
    sub = next(s["id"] for s in sim.state["subnets"] if s["name"] == "a")
    tag = f"token-{time.time_ns()}"
    spec = {"ResourceType": "network-interface", "Tags": [{"Key": "token", "Value": tag}]}
    # boto3 fills ClientToken itself and keeps it across retries: the lost first answer costs nothing.
    retrying = ec2_client(sim.state, retries=2)
    sim.add_fault("CreateNetworkInterface", lose_answer=True, count=1)
    made = retrying.create_network_interface(SubnetId=sub, TagSpecifications=[spec])["NetworkInterface"]
    left = retrying.describe_network_interfaces(Filters=[{"Name": "tag:token", "Values": [tag]}])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in left] == [made["NetworkInterfaceId"]]
    # The same token with other parameters is refused; without a token, a repeat is a second ENI.
    params = {"SubnetId": sub, "ClientToken": tag}
    status, first = raw_call(sim.state, "CreateNetworkInterface", params)
    status2, again = raw_call(sim.state, "CreateNetworkInterface", params)
    assert status == status2 == 200
    eni_id = first.split("<networkInterfaceId>")[1].split("<")[0]
    assert f"<networkInterfaceId>{eni_id}<" in again
    status, body = raw_call(sim.state, "CreateNetworkInterface", dict(params, Description="other"))
    assert status == 400 and "<Code>IdempotentParameterMismatch</Code>" in body
    a = raw_call(sim.state, "CreateNetworkInterface", {"SubnetId": sub})[1].split("<networkInterfaceId>")[1]
    b = raw_call(sim.state, "CreateNetworkInterface", {"SubnetId": sub})[1].split("<networkInterfaceId>")[1]
    assert a.split("<")[0] != b.split("<")[0]
    for e in [made["NetworkInterfaceId"], eni_id, a.split("<")[0], b.split("<")[0]]:
        retrying.delete_network_interface(NetworkInterfaceId=e)


def test_lose_answer_excludes_code_and_drop(faults):
    from .client import SimError

    with pytest.raises(SimError, match="lose_answer"):
        faults.add_fault("CreateNetworkInterface", lose_answer=True, code="InternalError")


# -- attaching takes time ------------------------------------------------------------------------------------------


def test_attach_is_attaching_first_and_invisible_to_the_node(sim, ec2, nodes):
    assert sim.ec2_settings()["attach_delay_seconds"] == 1.0  # the default: attaches take time, as in EC2
    node = nodes("m5.large")
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    sim.set_attach_delay(3.0)  # long enough to look at the attaching state on a busy machine
    try:
        t0 = time.time()
        ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node["instance_id"],
                                     DeviceIndex=1)
    finally:
        sim.set_attach_delay(1.0)
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert got["Attachment"]["Status"] == "attaching"
    flt = [{"Name": "attachment.status", "Values": ["attaching"]},
           {"Name": "network-interface-id", "Values": [eni["NetworkInterfaceId"]]}]
    assert len(ec2.describe_network_interfaces(Filters=flt)["NetworkInterfaces"]) == 1
    imds = Imds(node["imds_endpoint"])
    macs = imds.lines("meta-data/network/interfaces/macs/")
    sim.sync()
    assert eni["MacAddress"] + "/" not in macs and "eth1" not in links(node["namespace"])
    assert time.time() - t0 < 3.0, "the machine was too slow to see the attaching state"
    wait_until(lambda: "eth1" in links(node["namespace"]), timeout=8, what="eth1 after attaching")
    assert time.time() - t0 >= 3.0
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert got["Attachment"]["Status"] == "attached"
    assert eni["MacAddress"] + "/" in imds.lines("meta-data/network/interfaces/macs/")


def test_attach_delay_knob(sim, ec2, nodes):
    node = nodes("m5.large")
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]["NetworkInterfaceId"]
    sim.set_attach_delay(0)
    try:
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=node["instance_id"], DeviceIndex=1)
        got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
        assert got["Attachment"]["Status"] == "attached"
    finally:
        sim.set_attach_delay(1.0)


# -- scattered allocation -----------------------------------------------------------------------------------------


def offsets(eni: dict, base: str) -> list[int]:
    b = int(ipaddress.IPv4Address(base))
    return [int(ipaddress.IPv4Address(a["PrivateIpAddress"])) - b for a in eni["PrivateIpAddresses"]]


def test_addresses_are_scattered_by_default_and_a_seed_repeats_them(sim, ec2, subnet):
    assert sim.ec2_settings()["allocation"] == "scattered"
    s1, s2 = subnet("10.0.210.0/24"), subnet("10.0.211.0/24")
    got = ec2.create_network_interface(SubnetId=s1["id"], SecondaryPrivateIpAddressCount=7)["NetworkInterface"]
    o = sorted(offsets(got, "10.0.210.0"))
    assert o != list(range(o[0], o[0] + 8)), "eight consecutive addresses: allocation is not scattered"
    assert o[0] >= 4 and o[-1] <= 254
    seed = sim.set_allocation("scattered", seed=1234)["seed"]
    assert seed == 1234
    a = ec2.create_network_interface(SubnetId=s2["id"], SecondaryPrivateIpAddressCount=3, Ipv4PrefixCount=1)
    sim.set_allocation("scattered", seed=1234)
    s3 = subnet("10.0.212.0/24")
    b = ec2.create_network_interface(SubnetId=s3["id"], SecondaryPrivateIpAddressCount=3, Ipv4PrefixCount=1)
    assert offsets(a["NetworkInterface"], "10.0.211.0") == offsets(b["NetworkInterface"], "10.0.212.0")
    pa = ipaddress.IPv4Network(a["NetworkInterface"]["Ipv4Prefixes"][0]["Ipv4Prefix"])
    pb = ipaddress.IPv4Network(b["NetworkInterface"]["Ipv4Prefixes"][0]["Ipv4Prefix"])
    assert int(pa.network_address) - int(ipaddress.IPv4Address("10.0.211.0")) == \
        int(pb.network_address) - int(ipaddress.IPv4Address("10.0.212.0"))


def test_lowest_first_is_a_knob(sim, ec2, subnet):
    s = subnet("10.0.213.0/24")
    sim.set_allocation("lowest")
    try:
        got = ec2.create_network_interface(SubnetId=s["id"], SecondaryPrivateIpAddressCount=3)["NetworkInterface"]
        assert offsets(got, "10.0.213.0") == [4, 5, 6, 7]
    finally:
        sim.set_allocation("scattered")


# -- DescribeInstances of a Linux Nitro node ----------------------------------------------------------------------


def test_describe_instances_of_an_m5_large(sim, ec2, nodes):
    node = nodes("m5.large")
    inst = ec2.describe_instances(InstanceIds=[node["instance_id"]])["Reservations"][0]["Instances"][0]
    assert "Platform" not in inst  # only Windows instances carry Platform
    # The EC2 API reference: "The value xen is used for both Xen and Nitro hypervisors"; the instance type's
    # Hypervisor (DescribeInstanceTypes) is what says nitro.
    assert inst["Hypervisor"] == "xen"
    assert inst["MetadataOptions"]["HttpTokens"] == "required"  # the sim's IMDS is IMDSv2 only
    assert inst["MetadataOptions"]["HttpEndpoint"] == "enabled"
    # And IMDS indeed refuses a tokenless read.
    req = urllib.request.Request(node["imds_endpoint"] + "/latest/meta-data/instance-id")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 401


# -- the control API needs the control token ----------------------------------------------------------------------


def control_status(url: str, token: str | None) -> int:
    headers = {"X-Vpcsim-Token": token} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_control_api_refuses_requests_without_the_token(sim):
    base = sim.state["control_url"]
    assert control_status(base + "/state", None) == 401
    assert control_status(base + "/state", "wrong") == 401
    assert control_status(base + "/state", sim.state["control_token"]) == 200
    assert control_status(sim.state["endpoint"] + "/moto-api/data.json", None) == 401
    st = os.stat(os.path.join(sim.state_dir, sim.state["name"] + ".json"))
    assert st.st_mode & 0o077 == 0  # the state file, which holds the token, is private


def test_control_api_inside_a_node_namespace_needs_the_token(sim, nodes):
    node = nodes("m5.large")
    code = (
        "import urllib.request as u,urllib.error as e,sys\n"
        "h={'X-Vpcsim-Token':sys.argv[1]} if sys.argv[1] else {}\n"
        "try:\n print(u.urlopen(u.Request('http://169.254.170.10/vpcsim/faults',data=b'{\"action\":\"*\",\"drop\":true}',"
        "method='POST',headers=h),timeout=10).status)\n"
        "except e.HTTPError as x:\n print(x.code)"
    )
    r = netns_run(node["namespace"], sys.executable, "-c", code, "")
    assert r.stdout.strip() == "401", r.stderr
    assert sim.faults() == []
    r = netns_run(node["namespace"], sys.executable, "-c", code.replace("/faults", "/state").replace(
        ",data=b'{\"action\":\"*\",\"drop\":true}',method='POST'", ""), sim.state["control_token"])
    assert r.stdout.strip() == "200", r.stderr
