"""Namespaces: node eth0, hot-plugged ENIs, the vpc router's routes, cross-node traffic, the internet namespace."""

from __future__ import annotations

import ipaddress

from .conftest import Imds, links, netns_run, routes, wait_until


def vpc_ns(sim) -> str:
    return sim.state["namespaces"]["vpc"]


def route_dsts(ns: str, family: str = "-4") -> set[str]:
    return {r["dst"] for r in routes(ns, family)}


def ping(ns: str, dst: str, src: str | None = None) -> bool:
    argv = ["ping", "-c", "1", "-W", "1"] + (["-I", src] if src else []) + [dst]
    return netns_run(ns, *argv).returncode == 0


def test_node_has_eth0_with_primary_mac_address_and_default_route(sim, nodes):
    node = nodes("m5.large")
    eth0 = links(node["namespace"])["eth0"]
    assert eth0["address"] == node["mac"]
    out = netns_run(node["namespace"], "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert f"{node['primary_ip']}/20" in out
    default = [r for r in routes(node["namespace"]) if r["dst"] == "default"]
    gateway = next(s["gateway"] for s in sim.state["subnets"] if s["id"] == node["subnet_id"])
    assert default and default[0]["gateway"] == gateway and default[0]["dev"] == "eth0"
    # The router answers as the gateway.
    assert ping(node["namespace"], gateway)


def test_hot_plug_in_device_index_order_and_unplug(sim, ec2, nodes):
    node = nodes("m5.large")
    ns = node["namespace"]
    e2 = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    e1 = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    a2 = ec2.attach_network_interface(NetworkInterfaceId=e2["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=2)
    wait_until(lambda: "eth2" in links(ns), timeout=3, what="eth2 in the node")
    assert links(ns)["eth2"]["address"] == e2["MacAddress"]
    assert "eth1" not in links(ns)
    ec2.attach_network_interface(NetworkInterfaceId=e1["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=1)
    wait_until(lambda: "eth1" in links(ns), timeout=3, what="eth1 in the node")
    assert links(ns)["eth1"]["address"] == e1["MacAddress"]
    # A hot-plugged interface arrives down and unconfigured, as on a real instance.
    assert "UP" not in links(ns)["eth1"]["flags"]
    ec2.detach_network_interface(AttachmentId=a2["AttachmentId"])
    wait_until(lambda: "eth2" not in links(ns), timeout=3, what="eth2 to go")
    assert set(links(ns)) >= {"lo", "eth0", "eth1"}


def test_router_routes_follow_assigned_addresses_and_prefixes(sim, ec2, nodes):
    node = nodes("m5.large")
    eni = node["primary_eni"]
    ip = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=1)[
        "AssignedPrivateIpAddresses"][0]["PrivateIpAddress"]
    prefix = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=1)["AssignedIpv4Prefixes"][0][
        "Ipv4Prefix"]
    sim.sync()
    dsts = route_dsts(vpc_ns(sim))
    assert {node["primary_ip"], ip, prefix} <= dsts
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni, PrivateIpAddresses=[ip], Ipv4Prefixes=[prefix])
    sim.sync()
    dsts = route_dsts(vpc_ns(sim))
    assert node["primary_ip"] in dsts and ip not in dsts and prefix not in dsts


def test_ipv6_between_nodes(sim, ec2x, nodes):
    n1, n2 = nodes("m5.large"), nodes("m5.large", "b")
    v6 = {}
    for n in (n1, n2):
        v6[n["name"]] = ec2x.assign_ipv6_addresses(NetworkInterfaceId=n["primary_eni"], Ipv6AddressCount=1)[
            "AssignedIpv6Addresses"][0]
    prefix = ec2x.assign_ipv6_addresses(NetworkInterfaceId=n2["primary_eni"], Ipv6PrefixCount=1)["AssignedIpv6Prefixes"][0]
    sim.sync()
    assert {v6[n1["name"]], v6[n2["name"]], prefix} <= route_dsts(vpc_ns(sim), "-6")
    # eth0 carries the first IPv6 address, as DHCPv6 would configure it.
    assert v6[n2["name"]] in netns_run(n2["namespace"], "ip", "-6", "addr", "show", "dev", "eth0").stdout
    pod6 = str(ipaddress.IPv6Network(prefix).network_address + 7)
    assert netns_run(n2["namespace"], "ip", "-6", "addr", "add", f"{pod6}/128", "dev", "eth0", "nodad").returncode == 0
    for target in (v6[n2["name"]], pod6):
        ok = wait_until(lambda t=target: ping(n1["namespace"], t), timeout=5, what=f"ping6 {target}")
        assert ok


def test_two_nodes_reach_each_others_secondary_and_prefix_addresses(sim, ec2, nodes):
    n1, n2 = nodes("m5.large"), nodes("m5.large", "b")  # different subnets and AZs, one VPC
    assert ping(n1["namespace"], n2["primary_ip"])
    sec = ec2.assign_private_ip_addresses(NetworkInterfaceId=n2["primary_eni"], SecondaryPrivateIpAddressCount=1)[
        "AssignedPrivateIpAddresses"][0]["PrivateIpAddress"]
    prefix = ec2.assign_private_ip_addresses(NetworkInterfaceId=n2["primary_eni"], Ipv4PrefixCount=1)[
        "AssignedIpv4Prefixes"][0]["Ipv4Prefix"]
    pod_ip = str(ipaddress.IPv4Network(prefix).network_address + 5)
    sim.sync()
    for addr in (sec, pod_ip):
        assert netns_run(n2["namespace"], "ip", "addr", "add", f"{addr}/32", "dev", "eth0").returncode == 0
    assert ping(n1["namespace"], sec)
    assert ping(n1["namespace"], pod_ip)
    # Replies from the secondary address go back through the router too.
    assert ping(n2["namespace"], n1["primary_ip"], src=sec)
    # An address configured on the node but not assigned in EC2 is not delivered by the VPC.
    stray = str(ipaddress.IPv4Network(f"{n2['primary_ip']}/20", strict=False).network_address + 4000)
    assert netns_run(n2["namespace"], "ip", "addr", "add", f"{stray}/32", "dev", "eth0").returncode == 0
    assert not ping(n1["namespace"], stray)
    # After unassigning, the address is no longer reachable.
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=n2["primary_eni"], PrivateIpAddresses=[sec])
    sim.sync()
    assert not ping(n1["namespace"], sec)


def test_traffic_to_a_hot_plugged_eni(sim, ec2, nodes):
    n1, n2 = nodes("m5.large"), nodes("m5.large")
    eni = ec2.create_network_interface(SubnetId=n2["subnet_id"], SecondaryPrivateIpAddressCount=1)["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=n2["instance_id"], DeviceIndex=1)
    wait_until(lambda: "eth1" in links(n2["namespace"]), timeout=3, what="eth1")
    ns = n2["namespace"]
    secondary = [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"] if not a["Primary"]][0]
    for cmd in (["ip", "link", "set", "eth1", "up"], ["ip", "addr", "add", f"{secondary}/32", "dev", "eth1"],
                ["ip", "route", "add", "default", "via", "10.0.0.1", "dev", "eth1", "onlink", "table", "2"],
                ["ip", "rule", "add", "from", secondary, "lookup", "2"]):
        assert netns_run(ns, *cmd).returncode == 0, cmd
    assert ping(n1["namespace"], secondary)


def test_internet_sees_the_source_address(sim, nodes):
    node = nodes("m5.large")
    inet = sim.state["internet"]
    sim.clear_internet_peers()
    code = (
        "import socket;"
        f"s=socket.create_connection(('{inet['outside_ip']}',{inet['echo_port']}),timeout=5);"
        "s.sendall(b'ping');print(s.recv(4).decode());"
        "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);u.settimeout(5);"
        f"u.sendto(b'udp',('{inet['outside_ip']}',{inet['echo_port']}));print(u.recv(10).decode())"
    )
    r = netns_run(node["namespace"], "python3", "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ping", "udp"]
    peers = sim.internet_peers()
    # The internet sees the node's public address; the sim records the private one it was translated from.
    assert {(p["proto"], p["src"], p["private_src"]) for p in peers} == {
        ("tcp", node["public_ip"], node["primary_ip"]), ("udp", node["public_ip"], node["primary_ip"])}


def test_ec2_and_imds_from_inside_the_node(sim, nodes):
    """What ipamd inside a node namespace uses: netns_env (EC2 on 169.254.170.10, IMDS on 169.254.169.254)."""
    node = nodes("m5.large")
    env = node["netns_env"]
    assert env["AWS_ENDPOINT_URL_EC2"] == "http://169.254.170.10"
    assert env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] == "http://169.254.169.254"
    code = (
        "import boto3,os;"
        "e=boto3.client('ec2',endpoint_url=os.environ['AWS_ENDPOINT_URL_EC2']);"
        f"print(e.describe_instances(InstanceIds=['{node['instance_id']}'])['Reservations'][0]['Instances'][0]"
        "['PrivateIpAddress'])"
    )
    import os
    import subprocess
    import sys

    r = subprocess.run(["ip", "netns", "exec", node["namespace"], sys.executable, "-c", code],
                       env=dict(os.environ, **env), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == node["primary_ip"]


def test_terminating_a_node_removes_its_namespace(sim, nodes):
    node = sim.launch_node("t3.medium")
    assert netns_run(node["namespace"], "true").returncode == 0
    peers_before = {n for n in links(vpc_ns(sim)) if n.startswith("v")}
    sim.terminate_node(node["name"])
    assert netns_run(node["namespace"], "true").returncode != 0
    vname = "v" + node["primary_eni"].split("-", 1)[1][-13:]
    assert vname in peers_before
    assert vname not in links(vpc_ns(sim))
    # Its loopback IMDS is gone too.
    try:
        Imds(node["imds_endpoint"])
        reachable = True
    except OSError:
        reachable = False
    assert not reachable
