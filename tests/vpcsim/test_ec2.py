"""EC2 fidelity through boto3 and raw signed HTTP, with SigV4 verification on."""

from __future__ import annotations

import ipaddress
import re
import time

import botocore.exceptions
import pytest

from .conftest import ec2_client, raw_call


def error_of(excinfo: pytest.ExceptionInfo) -> tuple[str, int]:
    e = excinfo.value
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def subnet_id(sim, name: str = "a") -> str:
    return next(s["id"] for s in sim.state["subnets"] if s["name"] == name)


def eni_ips(eni: dict) -> list[str]:
    return [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]]


# -- SigV4 and the IAM policy -----------------------------------------------------------------------------------


def test_bad_signature_is_auth_failure_in_ec2_xml_shape(sim):
    status, body = raw_call(sim.state, "DescribeInstances", {}, secret="x" * 40)
    assert status == 401
    assert re.search(
        r"<Response><Errors><Error><Code>AuthFailure</Code><Message>[^<]+</Message></Error></Errors>"
        r"<RequestID>[^<]+</RequestID></Response>",
        body,
    ), body


def test_unknown_access_key_is_auth_failure(sim):
    bad = ec2_client(sim.state, key="AKIAIOSFODNN7EXAMPLE", secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.describe_instances()
    assert error_of(e) == ("AuthFailure", 401)


def test_action_outside_the_policy_is_unauthorized(sim, ec2):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m5.large")
    assert error_of(e) == ("UnauthorizedOperation", 403)
    assert "ec2:RunInstances" in e.value.response["Error"]["Message"]


def test_create_tags_allowed_on_enis_only(sim, ec2):
    eni = ec2.create_network_interface(SubnetId=subnet_id(sim))["NetworkInterface"]
    ec2.create_tags(Resources=[eni["NetworkInterfaceId"]], Tags=[{"Key": "node.k8s.amazonaws.com/instance_id", "Value": "i-1"}])
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert {"Key": "node.k8s.amazonaws.com/instance_id", "Value": "i-1"} in got["TagSet"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_tags(Resources=[subnet_id(sim)], Tags=[{"Key": "k", "Value": "v"}])
    assert error_of(e) == ("UnauthorizedOperation", 403)


def test_unknown_action_is_invalid_action(sim):
    status, body = raw_call(sim.state, "FrobnicateWidgets", {})
    assert status == 400
    assert "<Code>InvalidAction</Code>" in body


# -- ENIs, addresses, prefixes -----------------------------------------------------------------------------------


def test_create_eni_with_counts_prefixes_ipv6_and_tags(sim, ec2):
    eni = ec2.create_network_interface(
        SubnetId=subnet_id(sim),
        Description="aws-K8S-i-test",
        SecondaryPrivateIpAddressCount=3,
        Ipv4PrefixCount=2,
        Ipv6AddressCount=1,
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "cluster", "Value": "c1"}]}],
    )["NetworkInterface"]
    assert len(eni["PrivateIpAddresses"]) == 4
    assert sum(1 for a in eni["PrivateIpAddresses"] if a["Primary"]) == 1
    assert len(eni["Ipv4Prefixes"]) == 2
    for p in eni["Ipv4Prefixes"]:
        net = ipaddress.IPv4Network(p["Ipv4Prefix"])
        assert net.prefixlen == 28
        assert all(ipaddress.IPv4Address(ip) not in net for ip in eni_ips(eni))
    assert len(eni["Ipv6Addresses"]) == 1
    assert {"Key": "cluster", "Value": "c1"} in eni["TagSet"]
    assert eni["Description"] == "aws-K8S-i-test"
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert got["Ipv4Prefixes"] == eni["Ipv4Prefixes"]
    assert sorted(eni_ips(got)) == sorted(eni_ips(eni))


def test_raw_describe_shows_ipv4_prefix_set(sim, ec2):
    eni = ec2.create_network_interface(SubnetId=subnet_id(sim), Ipv4PrefixCount=1)["NetworkInterface"]
    status, body = raw_call(sim.state, "DescribeNetworkInterfaces", {"NetworkInterfaceId.1": eni["NetworkInterfaceId"]})
    assert status == 200
    assert re.search(r"<ipv4PrefixSet>\s*<item>\s*<ipv4Prefix>[\d.]+/28</ipv4Prefix>", body), body


@pytest.fixture()
def lowest(sim):
    """Lowest-free-first allocation for one test (the default is scattered, as in EC2)."""
    sim.set_allocation("lowest")
    try:
        yield sim
    finally:
        sim.set_allocation("scattered")


def test_addresses_are_unique_and_skip_reserved(sim, ec2, subnet):
    s = subnet("10.0.199.0/28")  # 16 addresses: .0-.3 and .15 reserved, 11 usable
    first = ec2.create_network_interface(SubnetId=s["id"], SecondaryPrivateIpAddressCount=4)["NetworkInterface"]
    second = ec2.create_network_interface(SubnetId=s["id"], SecondaryPrivateIpAddressCount=4)["NetworkInterface"]
    third = ec2.create_network_interface(SubnetId=s["id"])["NetworkInterface"]
    got = eni_ips(first) + eni_ips(second) + eni_ips(third)
    assert sorted(got, key=lambda a: int(ipaddress.IPv4Address(a))) == [f"10.0.199.{i}" for i in range(4, 15)]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_network_interface(SubnetId=s["id"])
    assert error_of(e) == ("InsufficientFreeAddressesInSubnet", 400)


def test_addresses_are_sequential_unique_and_skip_reserved(sim, ec2, subnet, lowest):
    s = subnet("10.0.200.0/28")  # 16 addresses: .0-.3 and .15 reserved, 11 usable
    first = ec2.create_network_interface(SubnetId=s["id"], SecondaryPrivateIpAddressCount=4)["NetworkInterface"]
    second = ec2.create_network_interface(SubnetId=s["id"], SecondaryPrivateIpAddressCount=5)["NetworkInterface"]
    got = eni_ips(first) + eni_ips(second)
    assert got == [f"10.0.200.{i}" for i in range(4, 15)]
    t0 = time.time()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.create_network_interface(SubnetId=s["id"])
    assert error_of(e) == ("InsufficientFreeAddressesInSubnet", 400)
    assert time.time() - t0 < 5
    # Freed addresses are handed out again, lowest first.
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=first["NetworkInterfaceId"], PrivateIpAddresses=["10.0.200.6"])
    r = ec2.assign_private_ip_addresses(NetworkInterfaceId=second["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=1)
    assert r["AssignedPrivateIpAddresses"] == [{"PrivateIpAddress": "10.0.200.6"}]


def test_scattered_prefixes_are_aligned_free_blocks(sim, ec2, subnet):
    s = subnet("10.0.198.0/26")  # only .16/28 and .32/28 are eligible
    eni = ec2.create_network_interface(SubnetId=s["id"])["NetworkInterface"]
    primary = ipaddress.IPv4Address(eni["PrivateIpAddress"])
    free = {b for b in ("10.0.198.16/28", "10.0.198.32/28") if primary not in ipaddress.IPv4Network(b)}
    r = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=len(free))
    assert {p["Ipv4Prefix"] for p in r["AssignedIpv4Prefixes"]} == free
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    assert error_of(e) == ("InsufficientCidrBlocks", 400)


def test_prefixes_are_aligned_free_blocks_else_insufficient_cidr_blocks(sim, ec2, subnet, lowest):
    s = subnet("10.0.201.0/26")  # blocks .0/28 (reserved .0-.3) and .48/28 (broadcast) are not eligible
    eni = ec2.create_network_interface(SubnetId=s["id"])["NetworkInterface"]
    assert eni["PrivateIpAddress"] == "10.0.201.4"
    r1 = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    r2 = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    assert r1["AssignedIpv4Prefixes"] == [{"Ipv4Prefix": "10.0.201.16/28"}]
    assert r2["AssignedIpv4Prefixes"] == [{"Ipv4Prefix": "10.0.201.32/28"}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    assert error_of(e) == ("InsufficientCidrBlocks", 400)
    # Secondary addresses never come from a delegated prefix.
    r = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=8)
    new = [ipaddress.IPv4Address(a["PrivateIpAddress"]) for a in r["AssignedPrivateIpAddresses"]]
    assert all(not (ipaddress.IPv4Address("10.0.201.16") <= a <= ipaddress.IPv4Address("10.0.201.47")) for a in new)
    # Unassigning a prefix frees its block.
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4Prefixes=["10.0.201.16/28"])
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert got["Ipv4Prefixes"] == [{"Ipv4Prefix": "10.0.201.32/28"}]
    r3 = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    assert r3["AssignedIpv4Prefixes"] == [{"Ipv4Prefix": "10.0.201.16/28"}]


def test_available_address_count_counts_prefixes(sim, ec2, ec2x, subnet):
    # A /25, not a /26: allocation is scattered (as in EC2), and the three addresses of the ENI can take the two
    # /28 blocks of a /26 that hold no reserved address, leaving no room for a prefix (InsufficientCidrBlocks,
    # as EC2 answers then). A /25 has six such blocks, so one stays whole whatever the draw.
    s = subnet("10.0.202.0/25")  # 128 - 5 reserved = 123
    def available() -> int:
        return ec2x.describe_subnets(SubnetIds=[s["id"]])["Subnets"][0]["AvailableIpAddressCount"]
    assert available() == 123
    eni = ec2.create_network_interface(SubnetId=s["id"], SecondaryPrivateIpAddressCount=2)["NetworkInterface"]
    assert available() == 120
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    assert available() == 104


def test_assign_lists_only_new_addresses(sim, ec2):
    eni = ec2.create_network_interface(SubnetId=subnet_id(sim), SecondaryPrivateIpAddressCount=2)["NetworkInterface"]
    r = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=3)
    new = [a["PrivateIpAddress"] for a in r["AssignedPrivateIpAddresses"]]
    assert len(new) == 3
    assert not set(new) & set(eni_ips(eni))


def test_eni_limit_per_instance_type(sim, ec2, nodes):
    node = nodes("t3.micro")  # 2 network interfaces
    e1 = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    e2 = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=e1["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.attach_network_interface(
            NetworkInterfaceId=e2["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=2
        )
    assert error_of(e) == ("AttachmentLimitExceeded", 400)


def test_address_limit_counts_each_prefix_as_one_slot(sim, ec2, nodes):
    node = nodes("m5.large")  # 10 IPv4 addresses per interface
    eni_id = node["primary_eni"]
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=5)  # 6 slots
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4PrefixCount=4)  # 10 slots
    for kwargs in ({"Ipv4PrefixCount": 1}, {"SecondaryPrivateIpAddressCount": 1}):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, **kwargs)
        assert error_of(e) == ("PrivateIpAddressLimitExceeded", 400)
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert len(got["PrivateIpAddresses"]) == 6 and len(got["Ipv4Prefixes"]) == 4


def test_attach_rejects_eni_with_more_addresses_than_the_type_allows(sim, ec2, nodes):
    node = nodes("t3.micro")  # 2 addresses per interface
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"], SecondaryPrivateIpAddressCount=2)["NetworkInterface"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=1)
    assert error_of(e) == ("PrivateIpAddressLimitExceeded", 400)


def test_duplicate_device_index_rejected(sim, ec2, nodes):
    node = nodes("m5.large")
    e1 = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    e2 = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=e1["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.attach_network_interface(NetworkInterfaceId=e2["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=1)
    assert error_of(e) == ("InvalidParameterValue", 400)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.attach_network_interface(NetworkInterfaceId=e1["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=2)
    assert error_of(e) == ("InvalidNetworkInterface.InUse", 400)


def test_attached_eni_cannot_be_deleted_and_primary_cannot_be_detached(sim, ec2, nodes):
    node = nodes("m5.large")
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]
    att = ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node["instance_id"], DeviceIndex=1)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    assert error_of(e) == ("InvalidNetworkInterface.InUse", 400)
    primary = ec2.describe_network_interfaces(NetworkInterfaceIds=[node["primary_eni"]])["NetworkInterfaces"][0]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.detach_network_interface(AttachmentId=primary["Attachment"]["AttachmentId"])
    assert error_of(e) == ("OperationNotPermitted", 400)
    ec2.detach_network_interface(AttachmentId=att["AttachmentId"])
    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])
    assert error_of(e)[0] == "InvalidNetworkInterfaceID.NotFound"


def test_delete_on_termination_is_honoured(sim, ec2, nodes):
    node = nodes("m5.large")
    keep = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]["NetworkInterfaceId"]
    gone = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=keep, InstanceId=node["instance_id"], DeviceIndex=1)
    att = ec2.attach_network_interface(NetworkInterfaceId=gone, InstanceId=node["instance_id"], DeviceIndex=2)
    ec2.modify_network_interface_attribute(
        NetworkInterfaceId=gone, Attachment={"AttachmentId": att["AttachmentId"], "DeleteOnTermination": True}
    )
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[gone])["NetworkInterfaces"][0]
    assert got["Attachment"]["DeleteOnTermination"] is True
    sim.terminate_node(node["name"])
    left = {e["NetworkInterfaceId"]: e for e in ec2.describe_network_interfaces(
        Filters=[{"Name": "network-interface-id", "Values": [keep, gone, node["primary_eni"]]}])["NetworkInterfaces"]}
    assert set(left) == {keep}
    assert left[keep]["Status"] == "available"
    assert "Attachment" not in left[keep]


def test_modify_and_unassign_answer_return_true(sim, ec2):
    eni = ec2.create_network_interface(SubnetId=subnet_id(sim), SecondaryPrivateIpAddressCount=1)["NetworkInterface"]
    status, body = raw_call(sim.state, "ModifyNetworkInterfaceAttribute", {
        "NetworkInterfaceId": eni["NetworkInterfaceId"], "SourceDestCheck.Value": "false"})
    assert status == 200 and "<return>true</return>" in body, body
    status, body = raw_call(sim.state, "UnassignPrivateIpAddresses", {
        "NetworkInterfaceId": eni["NetworkInterfaceId"], "PrivateIpAddress.1": eni_ips(eni)[1]})
    assert status == 200 and "<return>true</return>" in body, body


def test_unassign_rejects_primary_and_unknown_addresses(sim, ec2):
    eni = ec2.create_network_interface(SubnetId=subnet_id(sim))["NetworkInterface"]
    for ip in (eni["PrivateIpAddress"], "10.0.15.250"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"], PrivateIpAddresses=[ip])
        assert error_of(e) == ("InvalidParameterValue", 400)


def test_describe_pagination(sim, ec2):
    tag = f"page-{time.time_ns()}"
    made = {
        ec2.create_network_interface(
            SubnetId=subnet_id(sim, "b"),
            TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "page", "Value": tag}]}],
        )["NetworkInterface"]["NetworkInterfaceId"]
        for _ in range(7)
    }
    flt = [{"Name": "tag:page", "Values": [tag]}]
    p1 = ec2.describe_network_interfaces(Filters=flt, MaxResults=5)
    assert len(p1["NetworkInterfaces"]) == 5 and p1["NextToken"]
    p2 = ec2.describe_network_interfaces(Filters=flt, MaxResults=5, NextToken=p1["NextToken"])
    assert len(p2["NetworkInterfaces"]) == 2 and "NextToken" not in p2
    seen = {e["NetworkInterfaceId"] for e in p1["NetworkInterfaces"] + p2["NetworkInterfaces"]}
    assert seen == made
    paged = set()
    for page in ec2.get_paginator("describe_network_interfaces").paginate(
        Filters=flt, PaginationConfig={"PageSize": 5}
    ):
        paged |= {e["NetworkInterfaceId"] for e in page["NetworkInterfaces"]}
    assert paged == made
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_network_interfaces(Filters=flt, MaxResults=2000)
    assert error_of(e) == ("InvalidParameterValue", 400)


def ec2_settings_attach_delay(sim) -> float:
    return float(sim.ec2_settings()["attach_delay_seconds"])


def test_attachment_filters(sim, ec2, nodes):
    node = nodes("m5.large")
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=node["instance_id"], DeviceIndex=2)
    attaching = ec2.describe_network_interfaces(Filters=[
        {"Name": "attachment.status", "Values": ["attaching"]},
        {"Name": "network-interface-id", "Values": [eni]},
    ])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in attaching] == [eni]
    time.sleep(ec2_settings_attach_delay(sim) + 0.3)
    by_instance = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [node["instance_id"]]}])["NetworkInterfaces"]
    assert {e["NetworkInterfaceId"] for e in by_instance} == {node["primary_eni"], eni}
    by_index = ec2.describe_network_interfaces(Filters=[
        {"Name": "attachment.instance-id", "Values": [node["instance_id"]]},
        {"Name": "attachment.device-index", "Values": ["2"]},
    ])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in by_index] == [eni]
    attached = ec2.describe_network_interfaces(Filters=[
        {"Name": "attachment.status", "Values": ["attached"]},
        {"Name": "network-interface-id", "Values": [eni]},
    ])["NetworkInterfaces"]
    assert len(attached) == 1 and attached[0]["Attachment"]["DeviceIndex"] == 2
    primary_only = ec2.describe_network_interfaces(Filters=[
        {"Name": "attachment.instance-id", "Values": [node["instance_id"]]},
        {"Name": "attachment.device-index", "Values": ["0"]},
    ])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in primary_only] == [node["primary_eni"]]


def test_seed_policy_lacks_ipv6_calls_the_extended_one_has_them(sim, ec2, ec2x):
    eni = ec2.create_network_interface(SubnetId=subnet_id(sim))["NetworkInterface"]["NetworkInterfaceId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=1)
    assert error_of(e) == ("UnauthorizedOperation", 403)
    assert len(ec2x.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=1)["AssignedIpv6Addresses"]) == 1


def test_unknown_filter_is_rejected_and_request_ids_are_unique(sim, ec2):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_network_interfaces(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert error_of(e) == ("InvalidParameterValue", 400)
    ids = {ec2.describe_network_interfaces(MaxResults=5)["ResponseMetadata"]["RequestId"] for _ in range(3)}
    assert len(ids) == 3


def test_ipv6_addresses_and_prefixes(sim, ec2x):
    ec2 = ec2x
    s = next(x for x in sim.state["subnets"] if x["name"] == "a")
    eni = ec2.create_network_interface(SubnetId=s["id"])["NetworkInterface"]["NetworkInterfaceId"]
    r = ec2.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=2)
    assert len(r["AssignedIpv6Addresses"]) == 2
    net = ipaddress.IPv6Network(s["ipv6_cidr"])
    assert all(ipaddress.IPv6Address(a) in net for a in r["AssignedIpv6Addresses"])
    rp = ec2.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6PrefixCount=1)
    (prefix,) = rp["AssignedIpv6Prefixes"]
    assert ipaddress.IPv6Network(prefix).prefixlen == 80 and ipaddress.IPv6Network(prefix).subnet_of(net)
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    assert sorted(a["Ipv6Address"] for a in got["Ipv6Addresses"]) == sorted(r["AssignedIpv6Addresses"])
    assert got["Ipv6Prefixes"] == [{"Ipv6Prefix": prefix}]
    u = ec2.unassign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6Addresses=r["AssignedIpv6Addresses"][:1], Ipv6Prefixes=[prefix])
    assert u["UnassignedIpv6Addresses"] == r["AssignedIpv6Addresses"][:1]
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
    assert [a["Ipv6Address"] for a in got["Ipv6Addresses"]] == r["AssignedIpv6Addresses"][1:]
    assert not got.get("Ipv6Prefixes")


def test_ipv6_on_ipv4_only_subnet_is_a_client_error(sim, ec2x):
    ec2 = ec2x
    eni = ec2.create_network_interface(SubnetId=subnet_id(sim, "v4only"))["NetworkInterface"]["NetworkInterfaceId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=1)
    assert error_of(e) == ("InvalidParameterValue", 400)


def test_describe_instance_types_subnets_and_instances(sim, ec2, ec2x, nodes):
    t = ec2.describe_instance_types(InstanceTypes=["m5.large"])["InstanceTypes"][0]["NetworkInfo"]
    assert t["MaximumNetworkInterfaces"] == 3 and t["Ipv4AddressesPerInterface"] == 10
    subnets = ec2x.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [sim.state["vpc"]["id"]]}])["Subnets"]
    assert {s["CidrBlock"] for s in subnets} >= {"10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20"}
    node = nodes("m5.large")
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"], Ipv4PrefixCount=1)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=node["instance_id"], DeviceIndex=1)
    inst = ec2.describe_instances(InstanceIds=[node["instance_id"]])["Reservations"][0]["Instances"][0]
    assert inst["PrivateIpAddress"] == node["primary_ip"]
    by_index = {n["Attachment"]["DeviceIndex"]: n for n in inst["NetworkInterfaces"]}
    assert by_index[0]["NetworkInterfaceId"] == node["primary_eni"]
    assert by_index[1]["NetworkInterfaceId"] == eni
    assert len(by_index[1]["Ipv4Prefixes"]) == 1


def test_detach_delay_shows_detaching_then_available(sim, ec2, nodes):
    node = nodes("m5.large")
    eni = ec2.create_network_interface(SubnetId=node["subnet_id"])["NetworkInterface"]["NetworkInterfaceId"]
    att = ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=node["instance_id"], DeviceIndex=1)
    sim.set_detach_delay(1.0)
    try:
        ec2.detach_network_interface(AttachmentId=att["AttachmentId"])
        got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
        assert got["Attachment"]["Status"] == "detaching" and got["Status"] == "in-use"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ec2.delete_network_interface(NetworkInterfaceId=eni)
        assert error_of(e) == ("InvalidNetworkInterface.InUse", 400)
        time.sleep(1.1)
        got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
        assert got["Status"] == "available" and "Attachment" not in got
        ec2.delete_network_interface(NetworkInterfaceId=eni)
    finally:
        sim.set_detach_delay(0)
