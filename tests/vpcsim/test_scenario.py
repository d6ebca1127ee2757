"""The whole proving ground at once: two nodes, ENIs attached and addressed through signed EC2 calls, seen in IMDS
(from inside the node) and as links in the node namespace, and traffic across nodes through the vpc router."""

from __future__ import annotations

import ipaddress
import json

from .conftest import links, netns_run, wait_until

IMDS_IN_NODE = (
    "import sys,urllib.request as u;"
    "t=u.urlopen(u.Request('http://169.254.169.254/latest/api/token',method='PUT',"
    "headers={'X-aws-ec2-metadata-token-ttl-seconds':'60'})).read().decode();"
    "g=lambda p:u.urlopen(u.Request('http://169.254.169.254/latest/meta-data/'+p,"
    "headers={'X-aws-ec2-metadata-token':t})).read().decode();"
    "macs=[m.rstrip('/') for m in g('network/interfaces/macs/').split()];"
    "out={m:{k:g('network/interfaces/macs/'+m+'/'+k) for k in ('device-number','interface-id','local-ipv4s',"
    "'ipv4-prefix') if k in g('network/interfaces/macs/'+m+'/').split()} for m in macs};"
    "print(__import__('json').dumps(out))"
)


def test_two_nodes_enis_addresses_prefixes_imds_links_and_ping(sim, ec2, nodes):
    n1, n2 = nodes("m5.large"), nodes("m5.xlarge")
    plugged = {}
    for node in (n1, n2):
        eni = ec2.create_network_interface(
            SubnetId=node["subnet_id"],
            Description="aws-K8S-" + node["instance_id"],
            TagSpecifications=[{"ResourceType": "network-interface",
                                "Tags": [{"Key": "node.k8s.amazonaws.com/instance_id", "Value": node["instance_id"]}]}],
        )["NetworkInterface"]
        att = ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node["instance_id"],
                                           DeviceIndex=1)
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                               Attachment={"AttachmentId": att["AttachmentId"], "DeleteOnTermination": True})
        ips = [a["PrivateIpAddress"] for a in ec2.assign_private_ip_addresses(
            NetworkInterfaceId=eni["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=3)["AssignedPrivateIpAddresses"]]
        prefixes = [p["Ipv4Prefix"] for p in ec2.assign_private_ip_addresses(
            NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)["AssignedIpv4Prefixes"]]
        plugged[node["name"]] = (eni, ips, prefixes)

    for node in (n1, n2):
        eni, ips, prefixes = plugged[node["name"]]
        ns = node["namespace"]
        # The link appears with the ENI's MAC.
        wait_until(lambda: "eth1" in links(ns), timeout=3, what="eth1")
        assert links(ns)["eth1"]["address"] == eni["MacAddress"]
        # IMDS inside the node shows the ENI, its addresses and prefix.
        r = netns_run(ns, "python3", "-c", IMDS_IN_NODE)
        assert r.returncode == 0, r.stderr
        seen = json.loads(r.stdout)
        assert seen[eni["MacAddress"]] == {
            "device-number": "1",
            "interface-id": eni["NetworkInterfaceId"],
            "local-ipv4s": "\n".join([eni["PrivateIpAddress"]] + ips),
            "ipv4-prefix": prefixes[0],
        }
        assert seen[node["mac"]]["device-number"] == "0"

    # Configure n2's eth1 the way ipamd does (up, addresses, a route table for traffic from it) and ping from n1.
    eni2, ips2, prefixes2 = plugged[n2["name"]]
    pod_ip = str(ipaddress.IPv4Network(prefixes2[0]).network_address + 3)
    gateway = next(s["gateway"] for s in sim.state["subnets"] if s["id"] == n2["subnet_id"])
    ns2 = n2["namespace"]
    cmds = [["ip", "link", "set", "eth1", "up"],
            ["ip", "route", "add", "default", "via", gateway, "dev", "eth1", "onlink", "table", "2"]]
    for addr in [eni2["PrivateIpAddress"], ips2[0], pod_ip]:
        cmds += [["ip", "addr", "add", f"{addr}/32", "dev", "eth1"], ["ip", "rule", "add", "from", addr, "lookup", "2"]]
    for cmd in cmds:
        r = netns_run(ns2, *cmd)
        assert r.returncode == 0, (cmd, r.stderr)
    for target in (eni2["PrivateIpAddress"], ips2[0], pod_ip, n2["primary_ip"]):
        r = netns_run(n1["namespace"], "ping", "-c", "1", "-W", "2", target)
        assert r.returncode == 0, f"ping {target}: {r.stdout}{r.stderr}"
