"""In-process patches that make moto's EC2 behave like real EC2 for every call ipamd makes.

moto keeps the state (instances, ENIs, subnets); these patches replace the parts of its ENI handling that differ
from EC2: limits, /28 prefix delegation (Nitro types only), unique addresses scattered over the subnet (or lowest
first, a knob), error codes, pagination, filters, attach and detach that take time, and DeleteOnTermination.
`install()` applies them once per process.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import time
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import elastic_network_interfaces as eni_models
from moto.ec2.models import instances as instance_models
from moto.ec2.models import subnets as subnet_models
from moto.ec2.models.instance_types import INSTANCE_TYPES
from moto.ec2.responses.elastic_network_interfaces import ElasticNetworkInterfaces
from moto.ec2.utils import add_tag_specification

# The largest per-ENI IPv4 address count of any instance type: the ceiling for an ENI that is not attached yet
# (EC2 checks the instance type's own limit when the ENI is attached).
UNATTACHED_IPV4_CEILING = 50
UNATTACHED_IPV6_CEILING = 50
IPV4_PREFIX_LEN = 28
IPV6_PREFIX_LEN = 80
# Knobs the control API sets. attach_delay: seconds an attached ENI stays "attaching" (not in the instance's
# IMDS or OS yet) after Attach; real attaches take about a second or more. detach_delay: seconds an ENI stays
# attached in state "detaching" after Detach. allocation: "scattered" (EC2 hands out addresses and /28 blocks
# from anywhere in the subnet; reproducible with a seed) or "lowest" (lowest free first).
DEFAULT_ATTACH_DELAY = 1.0
SETTINGS: dict[str, Any] = {"attach_delay": DEFAULT_ATTACH_DELAY, "detach_delay": 0.0, "allocation": "scattered"}
ALLOCATIONS = ("scattered", "lowest")


class Allocator:
    """The random source of scattered allocation; `seed` makes a run reproducible."""

    def __init__(self) -> None:
        self.seed = 0
        self.rng = random.Random()
        self.reseed(None)

    def reseed(self, seed: int | None) -> int:
        self.seed = int(seed) if seed is not None else random.SystemRandom().randrange(1 << 31)
        self.rng = random.Random(self.seed)
        return self.seed


ALLOCATOR = Allocator()


def scattered() -> bool:
    return SETTINGS["allocation"] == "scattered"
DEFAULT_LIMITS = {"enis": 3, "ipv4": 10, "ipv6": 10, "cards": [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 3}]}


def err(code: str, message: str) -> EC2ClientError:
    return EC2ClientError(code, message)


# ---------------------------------------------------------------------------------------------------------------
# Limits


def type_limits(instance_type: str) -> dict[str, Any]:
    info = INSTANCE_TYPES.get(instance_type, {}).get("NetworkInfo")
    if not info:
        return DEFAULT_LIMITS
    return {
        "enis": int(info.get("MaximumNetworkInterfaces", 3)),
        "ipv4": int(info.get("Ipv4AddressesPerInterface", 10)),
        "ipv6": int(info.get("Ipv6AddressesPerInterface", 0)),
        "cards": info.get("NetworkCards")
        or [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": int(info.get("MaximumNetworkInterfaces", 3))}],
    }


def ipv4_slots(eni: Any) -> int:
    """Slots used on an ENI: each address and each /28 prefix counts as one."""
    return len(eni.private_ip_addresses) + len(getattr(eni, "ipv4_prefixes", []))


def ipv6_slots(eni: Any) -> int:
    return len(eni.ipv6_addresses) + len(getattr(eni, "ipv6_prefixes", []))


def ipv4_limit(eni: Any) -> int:
    if eni.instance is not None:
        return type_limits(eni.instance.instance_type)["ipv4"]
    return UNATTACHED_IPV4_CEILING


def ipv6_limit(eni: Any) -> int:
    if eni.instance is not None:
        return type_limits(eni.instance.instance_type)["ipv6"]
    return UNATTACHED_IPV6_CEILING


def check_ipv4_room(eni: Any, extra: int) -> None:
    if ipv4_slots(eni) + extra > ipv4_limit(eni):
        raise err("PrivateIpAddressLimitExceeded", "Number of private addresses will exceed limit.")


def check_ipv6_room(eni: Any, extra: int) -> None:
    if ipv6_slots(eni) + extra > ipv6_limit(eni):
        raise err("Ipv6AddressLimitExceeded", "Number of IPv6 addresses will exceed limit.")


def is_xen(instance_type: str) -> bool:
    """Xen-based types (t2, m4, c4, ...) have no prefix delegation; Nitro and bare metal have it."""
    return INSTANCE_TYPES.get(instance_type, {}).get("Hypervisor") == "xen"


def check_prefix_support(instance: Any, eni_id: str) -> None:
    if instance is not None and is_xen(instance.instance_type):
        raise err(
            "InvalidParameterValue",
            f"Prefix delegation is not supported for network interface {eni_id} attached to instance "
            f"{instance.id} of type {instance.instance_type}: prefixes need an instance built on the Nitro System.",
        )


# ---------------------------------------------------------------------------------------------------------------
# Address allocation: sequential, unique per subnet, AWS's reserved addresses skipped


def subnet_enis(backend: Any, subnet: Any) -> list[Any]:
    return [e for e in backend.enis.values() if e.subnet is not None and e.subnet.id == subnet.id]


def used_ipv4(backend: Any, subnet: Any) -> tuple[set[int], list[ipaddress.IPv4Network]]:
    used: set[int] = set()
    prefixes: list[ipaddress.IPv4Network] = []
    for eni in subnet_enis(backend, subnet):
        for a in eni.private_ip_addresses:
            used.add(int(ipaddress.IPv4Address(a["PrivateIpAddress"])))
        for p in getattr(eni, "ipv4_prefixes", []):
            prefixes.append(ipaddress.IPv4Network(p["Ipv4Prefix"]))
    for ip in list(getattr(subnet, "_subnet_ips", {}).keys()):
        try:
            used.add(int(ipaddress.IPv4Address(ip)))
        except ValueError:
            pass
    return used, prefixes


def reserved_ipv4(net: ipaddress.IPv4Network) -> set[int]:
    base = int(net.network_address)
    return {base, base + 1, base + 2, base + 3, int(net.broadcast_address)}


def in_prefix(ip: int, prefixes: list[ipaddress.IPv4Network]) -> bool:
    return any(int(p.network_address) <= ip <= int(p.broadcast_address) for p in prefixes)


def alloc_ipv4(backend: Any, subnet: Any, count: int, exclude: set[int] | None = None) -> list[str]:
    """`count` free addresses of the subnet (scattered, or the lowest), or InsufficientFreeAddressesInSubnet."""
    if count <= 0:
        return []
    net = ipaddress.IPv4Network(subnet.cidr_block)
    used, prefixes = used_ipv4(backend, subnet)
    used |= reserved_ipv4(net)
    used |= exclude or set()
    free = (
        ip
        for ip in range(int(net.network_address) + 4, int(net.broadcast_address))
        if ip not in used and not in_prefix(ip, prefixes)
    )
    if scattered():
        pool = list(free)
        out = ALLOCATOR.rng.sample(pool, count) if len(pool) >= count else pool
    else:
        out = []
        for ip in free:
            out.append(ip)
            if len(out) == count:
                break
    if len(out) < count:
        raise err(
            "InsufficientFreeAddressesInSubnet",
            f"The specified subnet {subnet.id} does not have enough free addresses to satisfy the request.",
        )
    return [str(ipaddress.IPv4Address(ip)) for ip in out]


def alloc_ipv4_prefixes(backend: Any, subnet: Any, count: int, exclude: set[int] | None = None) -> list[str]:
    """`count` aligned /28 blocks with no address in use and none of AWS's reserved ones, or InsufficientCidrBlocks."""
    if count <= 0:
        return []
    net = ipaddress.IPv4Network(subnet.cidr_block)
    used, prefixes = used_ipv4(backend, subnet)
    used |= reserved_ipv4(net)
    used |= exclude or set()
    out: list[str] = []
    if net.prefixlen <= IPV4_PREFIX_LEN:
        used_blocks = {u >> (32 - IPV4_PREFIX_LEN) for u in used}
        eligible = [
            block
            for block in net.subnets(new_prefix=IPV4_PREFIX_LEN)
            if int(block.network_address) >> (32 - IPV4_PREFIX_LEN) not in used_blocks
            and not any(block.overlaps(p) for p in prefixes)
        ]
        if scattered() and len(eligible) >= count:
            eligible = ALLOCATOR.rng.sample(eligible, count)
        out = [str(b) for b in eligible[:count]]
    if len(out) < count:
        raise err(
            "InsufficientCidrBlocks",
            "There are not enough free cidr blocks in the specified subnet to satisfy the request.",
        )
    return out


def subnet_ipv6_cidr(subnet: Any) -> ipaddress.IPv6Network | None:
    for assoc in getattr(subnet, "ipv6_cidr_block_associations", {}).values():
        cidr = assoc.get("ipv6CidrBlock")
        if cidr:
            return ipaddress.IPv6Network(cidr)
    return None


def require_ipv6(subnet: Any) -> ipaddress.IPv6Network:
    net = subnet_ipv6_cidr(subnet)
    if net is None:
        raise err(
            "InvalidParameterValue",
            f"You must specify an IPv6 CIDR block for subnet {subnet.id} before assigning IPv6 addresses.",
        )
    return net


def used_ipv6(backend: Any, subnet: Any) -> tuple[set[int], list[ipaddress.IPv6Network]]:
    used: set[int] = set()
    prefixes: list[ipaddress.IPv6Network] = []
    for eni in subnet_enis(backend, subnet):
        for a in eni.ipv6_addresses:
            used.add(int(ipaddress.IPv6Address(a)))
        for p in getattr(eni, "ipv6_prefixes", []):
            prefixes.append(ipaddress.IPv6Network(p["Ipv6Prefix"]))
    return used, prefixes


def alloc_ipv6(backend: Any, subnet: Any, count: int) -> list[str]:
    if count <= 0:
        return []
    net = require_ipv6(subnet)
    used, prefixes = used_ipv6(backend, subnet)
    out: list[str] = []
    ip = int(net.network_address) + 4
    last = int(net.broadcast_address) - 1
    if scattered() and last - ip > 1 << 20:
        # A /64 has room enough: random addresses, redrawn on the rare collision.
        while len(out) < count:
            cand = ALLOCATOR.rng.randrange(ip, last + 1)
            if cand in used or any(int(p.network_address) <= cand <= int(p.broadcast_address) for p in prefixes):
                continue
            used.add(cand)
            out.append(str(ipaddress.IPv6Address(cand)))
        return out
    while ip <= last and len(out) < count:
        if ip not in used and not any(int(p.network_address) <= ip <= int(p.broadcast_address) for p in prefixes):
            out.append(str(ipaddress.IPv6Address(ip)))
        ip += 1
    if len(out) < count:
        raise err("InsufficientFreeAddressesInSubnet", f"The specified subnet {subnet.id} has no free IPv6 addresses.")
    return out


def alloc_ipv6_prefixes(backend: Any, subnet: Any, count: int) -> list[str]:
    if count <= 0:
        return []
    net = require_ipv6(subnet)
    used, prefixes = used_ipv6(backend, subnet)
    out: list[str] = []
    size = 1 << (128 - IPV6_PREFIX_LEN)
    base = int(net.network_address)
    nblocks = 1 << max(0, IPV6_PREFIX_LEN - net.prefixlen)
    order = range(min(nblocks, 1 << 16))
    if scattered():
        order = ALLOCATOR.rng.sample(range(min(nblocks, 1 << 16)), min(nblocks, 1 << 16))
    for i in order:
        if len(out) >= count:
            break
        lo = base + i * size
        hi = lo + size - 1
        if any(lo <= u <= hi for u in used) or lo <= base + 3:
            continue
        block = ipaddress.IPv6Network((lo, IPV6_PREFIX_LEN))
        if any(block.overlaps(p) for p in prefixes):
            continue
        out.append(str(block))
    if len(out) < count:
        raise err(
            "InsufficientCidrBlocks",
            "There are not enough free cidr blocks in the specified subnet to satisfy the request.",
        )
    return out


def check_explicit_ipv4(backend: Any, subnet: Any, ips: list[str]) -> None:
    net = ipaddress.IPv4Network(subnet.cidr_block)
    used, prefixes = used_ipv4(backend, subnet)
    for ip in ips:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            raise err("InvalidParameterValue", f"Value ({ip}) for parameter PrivateIpAddress is invalid.")
        if addr not in net:
            raise err("InvalidParameterValue", f"Address {ip} does not fall within the subnet's address range")
        if int(addr) in reserved_ipv4(net):
            raise err("InvalidParameterValue", f"Address {ip} is reserved by AWS.")
        if int(addr) in used or in_prefix(int(addr), prefixes):
            raise err("InvalidIPAddress.InUse", f"Address {ip} is in use.")


def check_explicit_ipv4_prefixes(backend: Any, subnet: Any, cidrs: list[str]) -> list[str]:
    net = ipaddress.IPv4Network(subnet.cidr_block)
    used, prefixes = used_ipv4(backend, subnet)
    out = []
    for c in cidrs:
        try:
            block = ipaddress.IPv4Network(c)
        except ValueError:
            raise err("InvalidParameterValue", f"Value ({c}) for parameter Ipv4Prefix is invalid; a /28 is required.")
        if block.prefixlen != IPV4_PREFIX_LEN or not block.subnet_of(net):
            raise err("InvalidParameterValue", f"Prefix {c} must be a /28 inside {net}.")
        lo, hi = int(block.network_address), int(block.broadcast_address)
        if any(lo <= u <= hi for u in used | reserved_ipv4(net)) or any(block.overlaps(p) for p in prefixes):
            raise err("InvalidParameterValue", f"Prefix {c} overlaps addresses in use.")
        out.append(str(block))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Model patches


_orig_eni_init = eni_models.NetworkInterface.__init__


def eni_init(self: Any, *args: Any, **kwargs: Any) -> None:
    self.detach_at = None
    self.attach_at = None
    self.ipv4_prefixes = []
    self.ipv6_prefixes = []
    self.network_card_index = 0
    _orig_eni_init(self, *args, **kwargs)


def eni_filter_value(self: Any, filter_name: str, method_name: str | None = None) -> Any:
    if filter_name == "attachment.device-index":
        return str(self.device_index) if self.instance is not None else None
    if filter_name == "attachment.status":
        return attachment_status(self)
    if filter_name == "attachment.network-card-index":
        return str(self.network_card_index) if self.instance is not None else None
    if filter_name == "status":
        return self.status
    if filter_name in ("addresses.private-ip-address", "private-ip-address"):
        return [a["PrivateIpAddress"] for a in self.private_ip_addresses]
    if filter_name == "ipv6-addresses.ipv6-address":
        return list(self.ipv6_addresses)
    if filter_name == "mac-address":
        return self.mac_address
    return _orig_filter_value(self, filter_name, method_name)


_orig_filter_value = eni_models.NetworkInterface.get_filter_value


def attachment_status(eni: Any) -> str | None:
    if eni.instance is None:
        return None
    if getattr(eni, "detach_at", None) is not None:
        return "detaching"
    if getattr(eni, "attach_at", None) is not None:
        return "attaching"
    return "attached"


def is_attaching(eni: Any) -> bool:
    """Attached in the API but not yet in the instance (no IMDS entry, no device)."""
    return getattr(eni, "attach_at", None) is not None


class PatchedAttachment(eni_models.Attachment):
    def __init__(self, eni: Any):
        super().__init__(eni)
        self.network_card_index = getattr(eni, "network_card_index", 0)
        self.status = attachment_status(eni) or self.status


def finish_detaches(backend: Any, now: float) -> bool:
    """Completes attaches and detaches whose delay has passed; True if any did."""
    done = False
    for eni in list(backend.enis.values()):
        at = getattr(eni, "attach_at", None)
        if at is not None and at <= now:
            eni.attach_at = None
            done = True
        at = getattr(eni, "detach_at", None)
        if at is not None and at <= now:
            eni.detach_at = None
            if eni.instance is not None:
                eni.instance.detach_eni(eni)
            eni.network_card_index = 0
            done = True
    return done


def subnet_available_ip(self: Any, instance: Any) -> str:
    backend = self.ec2_backend
    ip = alloc_ipv4(backend, self, 1)[0]
    self._subnet_ips[ip] = instance
    return ip


def subnet_available_count(self: Any) -> int:
    """AvailableIpAddressCount as EC2 counts it: usable addresses minus those in use and in delegated prefixes."""
    net = ipaddress.IPv4Network(self.cidr_block)
    used, prefixes = used_ipv4(self.ec2_backend, self)
    reserved = reserved_ipv4(net)
    lo, hi = int(net.network_address), int(net.broadcast_address)
    taken = {u for u in used if lo <= u <= hi and u not in reserved}
    for p in prefixes:
        taken |= set(range(int(p.network_address), int(p.broadcast_address) + 1))
    return net.num_addresses - len(reserved) - len(taken)


_orig_terminate = instance_models.Instance.terminate


def instance_terminate(self: Any) -> Any:
    # EC2 detaches (instead of keeping attached) the ENIs whose DeleteOnTermination is false.
    keep = [nic for nic in self.nics.values() if not nic.delete_on_termination]
    state = _orig_terminate(self)
    for nic in keep:
        if nic.instance is self:
            index = nic.device_index
            self.detach_eni(nic)
            if index == 0:
                # moto's DescribeInstances needs nics[0] of a terminated instance; the ENI itself is free now.
                self.nics[0] = nic
    for ip in list(self._private_ips):
        try:
            self.ec2_backend.get_subnet(self.subnet_id).del_subnet_ip(ip)
        except Exception:  # noqa: BLE001 - subnet may be gone; nothing to free then
            pass
    return state


_orig_prep_nics = instance_models.Instance.prep_nics


def instance_prep_nics(self: Any, nic_spec: list[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
    _orig_prep_nics(self, nic_spec, *args, **kwargs)
    # A primary ENI that RunInstances creates is deleted with the instance, as in EC2.
    explicit = {int(n.get("DeviceIndex", 0)) for n in nic_spec if n.get("NetworkInterfaceId")}
    for index, nic in self.nics.items():
        if index not in explicit and not any(
            int(n.get("DeviceIndex", 0)) == index and n.get("DeleteOnTermination") is False for n in nic_spec
        ):
            nic.delete_on_termination = True


# ---------------------------------------------------------------------------------------------------------------
# Response handler replacements (query API actions)


def int_param(resp: Any, name: str) -> int:
    value = resp._get_param(name)
    if value in (None, ""):
        return 0
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise err("InvalidParameterValue", f"Value ({value}) for parameter {name} is invalid. Expected an integer.")
    if n < 0:
        raise err("InvalidParameterValue", f"Value ({value}) for parameter {name} is invalid. Must be >= 0.")
    return n


def list_param(resp: Any, name: str, key: str | None = None) -> list[str]:
    value = resp._get_param(name) or []
    out = []
    for item in value:
        if isinstance(item, dict):
            item = item.get(key) if key else next(iter(item.values()), None)
        if item:
            out.append(str(item))
    return out


# ClientToken -> (the request's other parameters, ENI id): CreateNetworkInterface is idempotent per token.
CLIENT_TOKENS: dict[tuple[str, str, str], tuple[Any, str]] = {}


def create_network_interface(self: Any) -> ActionResult:
    be = self.ec2_backend
    token = self._get_param("ClientToken")
    if token:
        key = (be.account_id, be.region_name, str(token))
        fingerprint = tuple(sorted((k, tuple(v)) for k, v in self.querystring.items() if k != "ClientToken"))
        seen = CLIENT_TOKENS.get(key)
        if seen is not None:
            if seen[0] != fingerprint:
                raise err(
                    "IdempotentParameterMismatch",
                    f"The client token {token} was already used with different parameters.",
                )
            if seen[1] in be.enis:
                return ActionResult({"NetworkInterface": be.enis[seen[1]], "ClientToken": token})
        result = create_network_interface_once(self)
        CLIENT_TOKENS[key] = (fingerprint, result.result["NetworkInterface"].id)  # type: ignore[index]
        result.result["ClientToken"] = token  # type: ignore[index]
        return result
    return create_network_interface_once(self)


def create_network_interface_once(self: Any) -> ActionResult:
    be = self.ec2_backend
    subnet_id = self._get_param("SubnetId")
    if not subnet_id:
        raise err("MissingParameter", "The request must contain the parameter SubnetId")
    subnet = be.get_subnet(subnet_id)
    primary = self._get_param("PrivateIpAddress")
    explicit = list_param(self, "PrivateIpAddresses", "PrivateIpAddress")
    secondary_count = int_param(self, "SecondaryPrivateIpAddressCount")
    prefix_count = int_param(self, "Ipv4PrefixCount")
    explicit_prefixes = list_param(self, "Ipv4Prefixes", "Ipv4Prefix")
    ipv6_count = int_param(self, "Ipv6AddressCount")
    explicit_ipv6 = list_param(self, "Ipv6Addresses", "Ipv6Address")
    ipv6_prefix_count = int_param(self, "Ipv6PrefixCount")
    explicit_ipv6_prefixes = list_param(self, "Ipv6Prefixes", "Ipv6Prefix")
    groups = self._get_param("Groups", [])
    description = self._get_param("Description")
    tags = add_tag_specification(self._get_param("TagSpecifications", []))
    self.error_on_dryrun()

    if prefix_count and explicit_prefixes:
        raise err("InvalidParameterCombination", "Ipv4PrefixCount and Ipv4Prefixes cannot be used together.")
    if secondary_count and len(explicit) > 1:
        raise err(
            "InvalidParameterCombination",
            "SecondaryPrivateIpAddressCount and more than one PrivateIpAddresses cannot be used together.",
        )
    if primary and primary not in explicit:
        explicit = [primary] + explicit
    slots = max(len(explicit), 1) + secondary_count + prefix_count + len(explicit_prefixes)
    if slots > UNATTACHED_IPV4_CEILING:
        raise err("PrivateIpAddressLimitExceeded", "Number of private addresses will exceed limit.")
    if ipv6_count + len(explicit_ipv6) + ipv6_prefix_count + len(explicit_ipv6_prefixes) > 0:
        require_ipv6(subnet)

    check_explicit_ipv4(be, subnet, explicit)
    taken = {int(ipaddress.IPv4Address(i)) for i in explicit}
    fresh = alloc_ipv4(be, subnet, (0 if explicit else 1) + secondary_count, exclude=taken)
    addresses = explicit + fresh
    taken |= {int(ipaddress.IPv4Address(i)) for i in fresh}
    prefixes = check_explicit_ipv4_prefixes(be, subnet, explicit_prefixes)
    prefixes += alloc_ipv4_prefixes(be, subnet, prefix_count, exclude=taken)
    ipv6 = explicit_ipv6 + alloc_ipv6(be, subnet, ipv6_count)
    ipv6_prefixes = explicit_ipv6_prefixes + alloc_ipv6_prefixes(be, subnet, ipv6_prefix_count)

    eni = be.create_network_interface(
        subnet,
        addresses[0],
        None,
        groups,
        description,
        tags,
        ipv6_addresses=ipv6,
        ipv6_address_count=0,
    )
    eni.private_ip_addresses.extend({"Primary": False, "PrivateIpAddress": ip} for ip in addresses[1:])
    eni.ipv4_prefixes = [{"Ipv4Prefix": p} for p in prefixes]
    eni.ipv6_prefixes = [{"Ipv6Prefix": p} for p in ipv6_prefixes]
    return ActionResult({"NetworkInterface": eni})


def eni_of(self: Any) -> Any:
    eni_id = self._get_param("NetworkInterfaceId")
    if not eni_id:
        raise err("MissingParameter", "The request must contain the parameter NetworkInterfaceId")
    return self.ec2_backend.get_network_interface(eni_id)


def assign_private_ip_addresses(self: Any) -> ActionResult:
    eni = eni_of(self)
    be = self.ec2_backend
    count = int_param(self, "SecondaryPrivateIpAddressCount")
    explicit = list_param(self, "PrivateIpAddresses", "PrivateIpAddress")
    prefix_count = int_param(self, "Ipv4PrefixCount")
    explicit_prefixes = list_param(self, "Ipv4Prefixes", "Ipv4Prefix")
    given = sum(1 for x in (count, explicit, prefix_count, explicit_prefixes) if x)
    if given == 0:
        raise err(
            "MissingParameter",
            "Either SecondaryPrivateIpAddressCount, PrivateIpAddress, Ipv4PrefixCount or Ipv4Prefix is required.",
        )
    if given > 1:
        raise err(
            "InvalidParameterCombination",
            "Only one of SecondaryPrivateIpAddressCount, PrivateIpAddress, Ipv4PrefixCount or Ipv4Prefix may be given.",
        )
    if prefix_count or explicit_prefixes:
        check_prefix_support(eni.instance, eni.id)
    check_ipv4_room(eni, count + len(explicit) + prefix_count + len(explicit_prefixes))
    result: dict[str, Any] = {"NetworkInterfaceId": eni.id}
    if count or explicit:
        if explicit:
            check_explicit_ipv4(be, eni.subnet, explicit)
            new = explicit
        else:
            new = alloc_ipv4(be, eni.subnet, count)
        eni.private_ip_addresses.extend({"Primary": False, "PrivateIpAddress": ip} for ip in new)
        result["AssignedPrivateIpAddresses"] = [{"PrivateIpAddress": ip} for ip in new]
    else:
        if explicit_prefixes:
            new = check_explicit_ipv4_prefixes(be, eni.subnet, explicit_prefixes)
        else:
            new = alloc_ipv4_prefixes(be, eni.subnet, prefix_count)
        eni.ipv4_prefixes.extend({"Ipv4Prefix": p} for p in new)
        result["AssignedIpv4Prefixes"] = [{"Ipv4Prefix": p} for p in new]
    return ActionResult(result)


def unassign_private_ip_addresses(self: Any) -> ActionResult:
    eni = eni_of(self)
    ips = list_param(self, "PrivateIpAddresses", "PrivateIpAddress")
    prefixes = list_param(self, "Ipv4Prefixes", "Ipv4Prefix")
    if not ips and not prefixes:
        raise err("MissingParameter", "Either PrivateIpAddress or Ipv4Prefix is required.")
    current = {a["PrivateIpAddress"]: a for a in eni.private_ip_addresses}
    for ip in ips:
        if ip not in current:
            raise err("InvalidParameterValue", f"Some of the specified addresses are not assigned to interface {eni.id}")
        if current[ip].get("Primary") or ip == eni.private_ip_address:
            raise err("InvalidParameterValue", f"The primary private IP address {ip} of {eni.id} cannot be unassigned.")
    have_prefixes = {p["Ipv4Prefix"] for p in eni.ipv4_prefixes}
    for p in prefixes:
        if p not in have_prefixes:
            raise err("InvalidParameterValue", f"Some of the specified prefixes are not assigned to interface {eni.id}")
    eni.private_ip_addresses = [a for a in eni.private_ip_addresses if a["PrivateIpAddress"] not in ips]
    eni.ipv4_prefixes = [p for p in eni.ipv4_prefixes if p["Ipv4Prefix"] not in prefixes]
    return EmptyResult()


def assign_ipv6_addresses(self: Any) -> ActionResult:
    eni = eni_of(self)
    be = self.ec2_backend
    count = int_param(self, "Ipv6AddressCount")
    explicit = list_param(self, "Ipv6Addresses", "Ipv6Address")
    prefix_count = int_param(self, "Ipv6PrefixCount")
    explicit_prefixes = list_param(self, "Ipv6Prefixes", "Ipv6Prefix")
    given = sum(1 for x in (count, explicit, prefix_count, explicit_prefixes) if x)
    if given == 0:
        raise err("MissingParameter", "Either Ipv6AddressCount, Ipv6Addresses, Ipv6PrefixCount or Ipv6Prefix is required.")
    if given > 1:
        raise err("InvalidParameterCombination", "Only one kind of IPv6 address or prefix request may be given.")
    net = require_ipv6(eni.subnet)
    if prefix_count or explicit_prefixes:
        check_prefix_support(eni.instance, eni.id)
    check_ipv6_room(eni, count + len(explicit) + prefix_count + len(explicit_prefixes))
    result: dict[str, Any] = {"NetworkInterfaceId": eni.id}
    if count or explicit:
        if explicit:
            used, _ = used_ipv6(be, eni.subnet)
            for ip in explicit:
                if ipaddress.IPv6Address(ip) not in net:
                    raise err("InvalidParameterValue", f"Address {ip} does not fall within the subnet's address range")
                if int(ipaddress.IPv6Address(ip)) in used:
                    raise err("InvalidIPAddress.InUse", f"Address {ip} is in use.")
            new = explicit
        else:
            new = alloc_ipv6(be, eni.subnet, count)
        eni.ipv6_addresses.extend(new)
        result["AssignedIpv6Addresses"] = new
    else:
        new = explicit_prefixes or alloc_ipv6_prefixes(be, eni.subnet, prefix_count)
        eni.ipv6_prefixes.extend({"Ipv6Prefix": p} for p in new)
        result["AssignedIpv6Prefixes"] = new
    return ActionResult(result)


def unassign_ipv6_addresses(self: Any) -> ActionResult:
    eni = eni_of(self)
    ips = list_param(self, "Ipv6Addresses", "Ipv6Address")
    prefixes = list_param(self, "Ipv6Prefixes", "Ipv6Prefix")
    missing = [ip for ip in ips if ip not in eni.ipv6_addresses]
    missing += [p for p in prefixes if p not in {x["Ipv6Prefix"] for x in eni.ipv6_prefixes}]
    if missing:
        raise err("InvalidParameterValue", f"Some of the specified addresses are not assigned to interface {eni.id}")
    eni.ipv6_addresses = [ip for ip in eni.ipv6_addresses if ip not in ips]
    eni.ipv6_prefixes = [p for p in eni.ipv6_prefixes if p["Ipv6Prefix"] not in prefixes]
    result: dict[str, Any] = {"NetworkInterfaceId": eni.id}
    if ips:
        result["UnassignedIpv6Addresses"] = ips
    if prefixes:
        result["UnassignedIpv6Prefixes"] = prefixes
    return ActionResult(result)


def attach_network_interface(self: Any) -> ActionResult:
    eni = eni_of(self)
    be = self.ec2_backend
    instance_id = self._get_param("InstanceId")
    if not instance_id:
        raise err("MissingParameter", "The request must contain the parameter InstanceId")
    device_index_raw = self._get_param("DeviceIndex")
    if device_index_raw in (None, ""):
        raise err("MissingParameter", "The request must contain the parameter DeviceIndex")
    device_index = int(device_index_raw)
    card = int(self._get_param("NetworkCardIndex") or 0)
    self.error_on_dryrun()
    instance = be.get_instance(instance_id)
    if instance.state not in ("running", "pending", "stopped"):
        raise err("IncorrectInstanceState", f"The instance '{instance_id}' is not in a valid state for this operation.")
    if eni.instance is not None:
        raise err("InvalidNetworkInterface.InUse", f"Interface: [{eni.id}] in use.")
    if device_index in instance.nics:
        raise err(
            "InvalidParameterValue",
            f"Instance '{instance_id}' already has an interface attached at device index '{device_index}'.",
        )
    limits = type_limits(instance.instance_type)
    cards = {int(c["NetworkCardIndex"]): int(c["MaximumNetworkInterfaces"]) for c in limits["cards"]}
    if card not in cards:
        raise err("InvalidParameterValue", f"Network card index {card} is not valid for {instance.instance_type}.")
    on_card = sum(1 for n in instance.nics.values() if getattr(n, "network_card_index", 0) == card)
    if len(instance.nics) + 1 > limits["enis"] or on_card + 1 > cards[card]:
        raise err(
            "AttachmentLimitExceeded",
            f"Interface count {len(instance.nics) + 1} exceeds the limit for {instance.instance_type}",
        )
    if ipv4_slots(eni) > limits["ipv4"]:
        raise err(
            "PrivateIpAddressLimitExceeded",
            f"Number of private addresses on {eni.id} exceeds the limit for {instance.instance_type}.",
        )
    if getattr(eni, "ipv4_prefixes", None) or getattr(eni, "ipv6_prefixes", None):
        check_prefix_support(instance, eni.id)
    if eni.subnet.availability_zone != instance._placement.zone:
        raise err(
            "InvalidParameterValue",
            f"Interface {eni.id} is in {eni.subnet.availability_zone}, instance {instance_id} in {instance._placement.zone}.",
        )
    eni.network_card_index = card
    instance.attach_eni(eni, device_index)
    eni.delete_on_termination = False
    delay = float(SETTINGS["attach_delay"])
    eni.attach_at = time.time() + delay if delay > 0 else None
    return ActionResult({"AttachmentId": eni.attachment_id, "NetworkCardIndex": card})


def detach_network_interface(self: Any) -> ActionResult:
    attachment_id = self._get_param("AttachmentId")
    if not attachment_id:
        raise err("MissingParameter", "The request must contain the parameter AttachmentId")
    self.error_on_dryrun()
    for eni in self.ec2_backend.enis.values():
        if eni.attachment_id == attachment_id:
            if eni.device_index == 0:
                raise err("OperationNotPermitted", "The network interface at device index 0 cannot be detached.")
            if getattr(eni, "detach_at", None) is not None:
                return EmptyResult()  # already detaching
            eni.attach_at = None  # a detach while attaching cancels the attach
            if SETTINGS["detach_delay"] > 0:
                eni.detach_at = time.time() + SETTINGS["detach_delay"]
                return EmptyResult()
            eni.instance.detach_eni(eni)
            eni.network_card_index = 0
            return EmptyResult()
    raise err("InvalidAttachmentID.NotFound", f"Interface attachment '{attachment_id}' does not exist.")


def delete_network_interface(self: Any) -> ActionResult:
    eni = eni_of(self)
    self.error_on_dryrun()
    if eni.instance is not None:
        raise err("InvalidNetworkInterface.InUse", f"The network interface '{eni.id}' is currently in use.")
    self.ec2_backend.delete_network_interface(eni.id)
    return EmptyResult()


def modify_network_interface_attribute(self: Any) -> ActionResult:
    eni = eni_of(self)
    be = self.ec2_backend
    groups = self._get_param("Groups", [])
    sdc = self._get_param("SourceDestCheck.Value")
    if sdc is None:
        sdc_obj = self._get_param("SourceDestCheck")
        sdc = sdc_obj.get("Value") if isinstance(sdc_obj, dict) else sdc_obj
    desc = self._get_param("Description.Value")
    if desc is None:
        d = self._get_param("Description")
        desc = d.get("Value") if isinstance(d, dict) else d
    attachment = self._get_param("Attachment") or {}
    attachment_id = attachment.get("AttachmentId") or self._get_param("Attachment.AttachmentId")
    dot = attachment.get("DeleteOnTermination")
    if dot is None:
        dot = self._get_param("Attachment.DeleteOnTermination")
    self.error_on_dryrun()
    if attachment_id is not None or dot is not None:
        if attachment_id != eni.attachment_id or eni.attachment_id is None:
            raise err("InvalidAttachmentID.NotFound", f"Interface attachment '{attachment_id}' does not exist.")
        if dot is not None:
            eni.delete_on_termination = str(dot).lower() == "true"
    if sdc is not None:
        sdc = str(sdc).lower() == "true"
    be.modify_network_interface_attribute(eni.id, groups, sdc, desc)
    return EmptyResult()


ENI_FILTERS = {
    "addresses.private-ip-address", "addresses.primary", "addresses.association.public-ip",
    "addresses.association.owner-id", "association.association-id", "association.allocation-id",
    "association.ip-owner-id", "association.public-ip", "association.public-dns-name", "attachment.attachment-id",
    "attachment.attach-time", "attachment.delete-on-termination", "attachment.device-index",
    "attachment.instance-id", "attachment.instance-owner-id", "attachment.nat-gateway-id", "attachment.status",
    "attachment.network-card-index", "availability-zone", "description", "group-id", "group-name",
    "ipv6-addresses.ipv6-address", "interface-type", "mac-address", "network-interface-id", "owner-id",
    "private-ip-address", "private-dns-name", "requester-id", "requester-managed", "source-dest-check", "status",
    "subnet-id", "tag-key", "vpc-id",
}


def describe_network_interfaces(self: Any) -> ActionResult:
    eni_ids = self._get_param("NetworkInterfaceIds", [])
    filters = self._filters_from_querystring()
    for name in filters or {}:
        if name not in ENI_FILTERS and not name.startswith("tag:"):
            raise err("InvalidParameterValue", f"The filter '{name}' is invalid")
    max_results = self._get_param("MaxResults")
    token = self._get_param("NextToken")
    self.error_on_dryrun()
    if max_results is not None and eni_ids:
        raise err(
            "InvalidParameterCombination",
            "The parameter NetworkInterfaceIds cannot be used with the parameter MaxResults",
        )
    enis = self.ec2_backend.get_all_network_interfaces(eni_ids, filters)
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)[1])
        except (ValueError, IndexError):
            raise err("InvalidParameterValue", f"The token '{token}' is invalid.")
    result: dict[str, Any] = {}
    if max_results is not None:
        n = int(max_results)
        if n < 5 or n > 1000:
            raise err(
                "InvalidParameterValue",
                f"Value ( {n} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.",
            )
        page = enis[start : start + n]
        if start + n < len(enis):
            result["NextToken"] = base64.urlsafe_b64encode(f"eni:{start + n}".encode()).decode()
    else:
        page = enis[start:]
    result["NetworkInterfaces"] = page
    return ActionResult(result)


RESOURCE_TYPES = {
    "eni": "network-interface",
    "i": "instance",
    "subnet": "subnet",
    "vpc": "vpc",
    "sg": "security-group",
    "vol": "volume",
    "ami": "image",
    "snap": "snapshot",
}


def resource_arns(data: dict[str, Any], region: str, account: str) -> list[str]:
    """ARNs of the ResourceId.N parameters of a tagging call (moto checks tagging against Resource "*")."""
    arns = []
    for key, value in data.items():
        if not key.startswith("ResourceId."):
            continue
        for rid in value if isinstance(value, list) else [value]:
            kind = RESOURCE_TYPES.get(str(rid).split("-", 1)[0], "resource")
            arns.append(f"arn:aws:ec2:{region}:{account}:{kind}/{rid}")
    return arns


def install_tagging_authz() -> None:
    from moto.iam import access_control

    orig = access_control.IAMRequestBase.check_action_permitted

    def check_action_permitted(self: Any, resource: str) -> None:
        if resource == "*" and self._action in ("ec2:CreateTags", "ec2:DeleteTags"):
            arns = resource_arns(self._data, self._region, self.account_id)
            if arns:
                for arn in arns:
                    orig(self, arn)
                return
        orig(self, resource)

    access_control.IAMRequestBase.check_action_permitted = check_action_permitted


_installed = False


def install() -> None:
    """Apply every patch (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    install_tagging_authz()
    eni_models.NetworkInterface.__init__ = eni_init
    eni_models.NetworkInterface.get_filter_value = eni_filter_value
    eni_models.Attachment = PatchedAttachment
    subnet_models.Subnet.get_available_subnet_ip = subnet_available_ip
    subnet_models.Subnet.available_ip_address_count = property(subnet_available_count)
    instance_models.Instance.terminate = instance_terminate
    instance_models.Instance.prep_nics = instance_prep_nics
    R = ElasticNetworkInterfaces
    R.create_network_interface = create_network_interface
    R.assign_private_ip_addresses = assign_private_ip_addresses
    R.unassign_private_ip_addresses = unassign_private_ip_addresses
    R.assign_ipv6_addresses = assign_ipv6_addresses
    R.unassign_ipv6_addresses = unassign_ipv6_addresses
    R.attach_network_interface = attach_network_interface
    R.detach_network_interface = detach_network_interface
    R.delete_network_interface = delete_network_interface
    R.modify_network_interface_attribute = modify_network_interface_attribute
    R.describe_network_interfaces = describe_network_interfaces
