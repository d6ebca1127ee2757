"""Network namespaces of the sim: a "vpc" router, an "internet" behind it, and one namespace per node.

Every ENI attached to a node's instance is a veth pair: `ethN` (N = device index, the ENI's MAC) in the node, and
`v<eni-suffix>` in the vpc namespace, where the router answers as the subnet gateway (.1) and routes each address
and prefix assigned to that ENI to it (through a permanent neighbour entry for the ENI's primary address and MAC,
as the VPC fabric delivers to the ENI without ARP). `sync()` reconciles all of this with moto's state; the sim calls
it after every mutating EC2 call and every 0.2 s. Only namespaces named `<prefix>-...` are touched.

Like EC2, the router enforces the source/destination check: a packet that arrives from an ENI with a source that is
not one of that ENI's addresses or prefixes is dropped (unless the ENI's SourceDestCheck is off). The link to the
internet is an internet gateway: it carries only traffic from a private address that has a public IPv4 address
associated (each node's primary address; 1:1 NAT to it), and drops every other source. Both are nftables rules in
the vpc namespace (table `inet vpcsim`) whose sets `sync()` keeps equal to EC2's state.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import socket
import subprocess
import threading
import time
from typing import Any, Callable

CLONE_NEWNET = 0x40000000
IMDS_ADDR = "169.254.169.254"
# Where EC2 answers inside a node namespace (127.0.0.1 there is the node's own loopback).
EC2_ADDR = "169.254.170.10"
UPLINK_VPC = "100.64.0.1"
UPLINK_INET = "100.64.0.2"
OUTSIDE_IP = "203.0.113.10"
ECHO_PORT = 7
# Public IPv4 addresses the internet gateway maps nodes' primary addresses to (TEST-NET-2).
PUBLIC_POOL = "198.51.100.0/24"
NFT_TABLE = "vpcsim"
NFT_RULES = f"""
table inet {NFT_TABLE} {{
  set open {{ type ifname; }}
  set src4 {{ type ifname . ipv4_addr; flags interval; }}
  set src6 {{ type ifname . ipv6_addr; flags interval; }}
  set nat_private {{ type ipv4_addr; }}
  map snat4 {{ type ipv4_addr : ipv4_addr; }}
  map dnat4 {{ type ipv4_addr : ipv4_addr; }}
  counter sdc_dropped {{ }}
  counter igw_dropped {{ }}
  chain source_dest_check {{
    type filter hook prerouting priority -300; policy accept;
    iifname != "v*" accept
    iifname @open accept
    iifname . ip saddr @src4 accept
    ip6 saddr fe80::/10 accept
    ip6 saddr :: accept
    iifname . ip6 saddr @src6 accept
    counter name sdc_dropped drop
  }}
  chain igw_inbound_nat {{
    type nat hook prerouting priority -100; policy accept;
    iifname "inet" dnat ip to ip daddr map @dnat4
  }}
  chain igw_forward {{
    type filter hook forward priority 0; policy accept;
    oifname "inet" ip saddr != @nat_private counter name igw_dropped drop
    oifname "inet" meta nfproto ipv6 counter name igw_dropped drop
    iifname "inet" ct state established,related accept
    iifname "inet" ct status dnat accept
    iifname "inet" counter name igw_dropped drop
  }}
  chain igw_outbound_nat {{
    type nat hook postrouting priority 100; policy accept;
    oifname "inet" snat ip to ip saddr map @snat4
  }}
}}
"""

log = logging.getLogger("vpcsim.net")
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def ip_batch(ns: str | None, cmds: list[str], check: bool = False) -> str:
    """Runs `ip [-n ns] -force -batch -` with one command per line; returns stderr (errors of failed lines)."""
    if not cmds:
        return ""
    argv = ["ip"] + (["-n", ns] if ns else []) + ["-force", "-batch", "-"]
    r = subprocess.run(argv, input="\n".join(cmds) + "\n", capture_output=True, text=True, check=False)
    if r.returncode != 0 and r.stderr.strip():
        msg = f"ip -n {ns}: {r.stderr.strip()} (commands: {cmds})"
        if check:
            raise RuntimeError(msg)
        log.warning("%s", msg)
    return r.stderr


def ip(*args: str, check: bool = True) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def sysctl(ns: str, settings: dict[str, str]) -> None:
    def write() -> None:
        for key, value in settings.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)

    in_netns(ns, write)


def in_netns(ns: str, fn: Callable[[], Any]) -> Any:
    """Runs fn in a short-lived thread that has entered namespace `ns` (setns is per thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=run, name=f"netns-{ns}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def bound_socket(ns: str, family: int, kind: int, addr: tuple[str, int]) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        return s

    return in_netns(ns, make)


def nft(ns: str, script: str) -> None:
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        raise RuntimeError(f"nft in {ns}: {r.stderr.strip()}\n{script}")


def link_local_of(mac: str) -> str:
    """The EUI-64 link-local address a Linux interface with this MAC configures."""
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    eui = b[:3] + [0xFF, 0xFE] + b[3:]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80] + [0] * 6 + eui)))


class Link:
    def __init__(self, eni_id: str, node: str, index: int, mac: str, vname: str):
        self.eni_id = eni_id
        self.node = node
        self.index = index
        self.mac = mac
        self.vname = vname
        self.routes: dict[str, str] = {}  # destination -> `ip route replace` arguments
        self.neigh: set[str] = set()
        self.gateways: set[str] = set()
        self.node_ipv6: str | None = None  # the IPv6 address configured on the node's eth0 (DHCPv6's job on EC2)


class Network:
    def __init__(self, sim: Any):
        self.sim = sim
        self.prefix = sim.prefix
        self.vpc_ns = f"{self.prefix}-vpc"
        self.inet_ns = f"{self.prefix}-inet"
        self.node_ns: dict[str, str] = {}
        self.links: dict[str, Link] = {}
        self.lock = threading.RLock()
        self.peer_log: list[dict[str, Any]] = []
        self.peer_lock = threading.Lock()
        self.echo_sockets: list[socket.socket] = []
        self.closed = False
        # What the nftables sets hold now (source/destination check, internet gateway NAT).
        self.filter_state: Any = None
        # public address -> (private address, node) of the internet gateway's 1:1 NAT, for `peers`.
        self.nat_public: dict[str, tuple[str, str]] = {}

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def namespaces(self) -> dict[str, Any]:
        return {"vpc": self.vpc_ns, "internet": self.inet_ns, "nodes": dict(self.node_ns)}

    def internet_info(self) -> dict[str, Any]:
        return {"namespace": self.inet_ns, "outside_ip": OUTSIDE_IP, "echo_port": ECHO_PORT, "protocols": ["tcp", "udp"]}

    def setup(self) -> None:
        for ns in (self.vpc_ns, self.inet_ns):
            ip("netns", "add", ns)
        sysctl(
            self.vpc_ns,
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.rp_filter": "0",
                "net.ipv4.conf.default.rp_filter": "0",
                "net.ipv6.conf.all.forwarding": "1",
                # Like the VPC fabric, answer ARP for every other address in the subnet (nodes see one L2 subnet).
                "net.ipv4.conf.all.proxy_arp": "1",
                "net.ipv4.conf.default.proxy_arp": "1",
            },
        )
        sysctl(self.inet_ns, {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"})
        ip_batch(
            self.vpc_ns,
            [
                "link set lo up",
                f"link add inet type veth peer name uplink netns {self.inet_ns}",
                f"addr add {UPLINK_VPC}/30 dev inet",
                "link set inet up",
                f"route replace default via {UPLINK_INET}",
            ],
            check=True,
        )
        ip_batch(
            self.inet_ns,
            [
                "link set lo up",
                f"addr add {UPLINK_INET}/30 dev uplink",
                "link set uplink up",
                f"addr add {OUTSIDE_IP}/32 dev lo",
                f"route replace default via {UPLINK_VPC}",
            ],
            check=True,
        )
        nft(self.vpc_ns, NFT_RULES)
        self.start_echo()

    def teardown(self) -> None:
        self.closed = True
        for s in self.echo_sockets:
            try:
                s.close()
            except OSError:
                pass
        with self.lock:
            for ns in list(self.node_ns.values()) + [self.vpc_ns, self.inet_ns]:
                ip("netns", "del", ns, check=False)
            self.node_ns.clear()
            self.links.clear()

    # -- internet echo ---------------------------------------------------------------------------------------------

    def start_echo(self) -> None:
        tcp = bound_socket(self.inet_ns, socket.AF_INET, socket.SOCK_STREAM, (OUTSIDE_IP, ECHO_PORT))
        tcp.listen(64)
        udp = bound_socket(self.inet_ns, socket.AF_INET, socket.SOCK_DGRAM, (OUTSIDE_IP, ECHO_PORT))
        self.echo_sockets = [tcp, udp]
        threading.Thread(target=self.tcp_echo, args=(tcp,), name="echo-tcp", daemon=True).start()
        threading.Thread(target=self.udp_echo, args=(udp,), name="echo-udp", daemon=True).start()

    def note_peer(self, proto: str, addr: tuple[str, int]) -> None:
        private, node = self.nat_public.get(addr[0], (None, None))
        with self.peer_lock:
            self.peer_log.append({"proto": proto, "src": addr[0], "sport": addr[1], "time": time.time(),
                                  "private_src": private, "node": node})
            del self.peer_log[:-10000]

    def tcp_echo(self, sock: socket.socket) -> None:
        while not self.closed:
            try:
                conn, addr = sock.accept()
            except OSError:
                return
            self.note_peer("tcp", addr)

            def serve(c: socket.socket) -> None:
                with c:
                    c.settimeout(10)
                    try:
                        while data := c.recv(4096):
                            c.sendall(data)
                    except OSError:
                        pass

            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    def udp_echo(self, sock: socket.socket) -> None:
        while not self.closed:
            try:
                data, addr = sock.recvfrom(65535)
            except OSError:
                return
            self.note_peer("udp", addr)
            try:
                sock.sendto(data, addr)
            except OSError:
                pass

    def peers(self) -> list[dict[str, Any]]:
        with self.peer_lock:
            return list(self.peer_log)

    def clear_peers(self) -> None:
        with self.peer_lock:
            self.peer_log.clear()

    # -- nodes -----------------------------------------------------------------------------------------------------

    def add_node(self, name: str, node: dict[str, Any]) -> str:
        ns = f"{self.prefix}-{name}"
        ip("netns", "add", ns)
        ip_batch(ns, ["link set lo up", f"addr add {IMDS_ADDR}/32 dev lo", f"addr add {EC2_ADDR}/32 dev lo"], check=True)
        with self.lock:
            self.node_ns[name] = ns
        return ns

    def imds_socket(self, ns: str) -> socket.socket:
        return bound_socket(ns, socket.AF_INET, socket.SOCK_STREAM, (IMDS_ADDR, 80))

    def ec2_socket(self, ns: str) -> socket.socket:
        s = bound_socket(ns, socket.AF_INET, socket.SOCK_STREAM, (EC2_ADDR, 80))
        s.listen(128)
        return s

    def remove_node(self, name: str) -> None:
        with self.lock:
            ns = self.node_ns.pop(name, None)
            gone = [self.links.pop(e) for e, link in list(self.links.items()) if link.node == name]
            ip_batch(self.vpc_ns, [f"link del {link.vname}" for link in gone])
        if ns:
            ip("netns", "del", ns, check=False)

    # -- reconcile with EC2 ----------------------------------------------------------------------------------------

    def desired(self) -> dict[str, dict[str, Any]]:
        """ENI id -> what the kernel should have for it, read from moto under the sim lock."""
        want: dict[str, dict[str, Any]] = {}
        with self.sim.lock:
            for name, node in list(self.sim.nodes.items()):
                if name not in self.node_ns:
                    continue
                try:
                    inst = self.sim.ec2.get_instance(node["instance_id"])
                except Exception:  # noqa: BLE001 - terminated and purged
                    continue
                if inst.state not in ("running", "pending"):
                    continue
                for index, eni in inst.nics.items():
                    if getattr(eni, "attach_at", None) is not None:
                        continue  # still attaching: no device in the node yet
                    subnet = eni.subnet
                    net = ipaddress.IPv4Network(subnet.cidr_block)
                    v6 = None
                    for a in subnet.ipv6_cidr_block_associations.values():
                        v6 = a.get("ipv6CidrBlock") or v6
                    want[eni.id] = {
                        "node": name,
                        "index": int(index),
                        "mac": eni.mac_address,
                        "primary": eni.private_ip_address,
                        "plen": net.prefixlen,
                        "gateway": str(net.network_address + 1),
                        "ipv4": [a["PrivateIpAddress"] for a in eni.private_ip_addresses],
                        "prefixes": [p["Ipv4Prefix"] for p in getattr(eni, "ipv4_prefixes", [])],
                        "ipv6": list(eni.ipv6_addresses),
                        "v6prefixes": [p["Ipv6Prefix"] for p in getattr(eni, "ipv6_prefixes", [])],
                        "has_v6": v6 is not None,
                        "source_dest_check": str(eni.source_dest_check).lower() != "false",
                        "public_ip": eni.public_ip,
                    }
        return want

    def sync(self) -> None:
        if self.closed:
            return
        want = self.desired()
        with self.lock:
            for eni_id in [e for e, link in self.links.items() if e not in want or self._moved(link, want[e])]:
                self._remove_link(self.links.pop(eni_id))
            for eni_id, w in sorted(want.items(), key=lambda kv: (kv[1]["node"], kv[1]["index"])):
                link = self.links.get(eni_id)
                if link is None:
                    if w["node"] not in self.node_ns:
                        continue
                    link = self._add_link(eni_id, w)
                    if link is None:
                        continue
                    self.links[eni_id] = link
                self._sync_routes(link, w)
            self._sync_filter(want)

    def _sync_filter(self, want: dict[str, dict[str, Any]]) -> None:
        """Source/destination check and internet gateway: the nftables sets follow the ENIs that are plugged."""
        open_links: set[str] = set()
        src4: set[tuple[str, str]] = set()
        src6: set[tuple[str, str]] = set()
        nat: dict[str, str] = {}
        nat_public: dict[str, tuple[str, str]] = {}
        for eni_id, link in self.links.items():
            w = want.get(eni_id)
            if w is None:
                continue
            v = link.vname
            if not w["source_dest_check"]:
                open_links.add(v)
            src4 |= {(v, a) for a in w["ipv4"]} | {(v, p) for p in w["prefixes"]}
            src6 |= {(v, a) for a in w["ipv6"]} | {(v, p) for p in w["v6prefixes"]}
            if w["public_ip"]:
                nat[w["primary"]] = w["public_ip"]
                nat_public[w["public_ip"]] = (w["primary"], w["node"])
        state = (frozenset(open_links), frozenset(src4), frozenset(src6), tuple(sorted(nat.items())))
        if state == self.filter_state:
            return
        t = f"inet {NFT_TABLE}"
        lines = [f"flush set {t} {name}" for name in ("open", "src4", "src6", "nat_private")]
        lines += [f"flush map {t} {name}" for name in ("snat4", "dnat4")]

        def add(name: str, elems: list[str]) -> None:
            if elems:
                lines.append(f"add element {t} {name} {{ {', '.join(elems)} }}")

        add("open", [f'"{v}"' for v in sorted(open_links)])
        add("src4", [f'"{v}" . {a}' for v, a in sorted(src4)])
        add("src6", [f'"{v}" . {a}' for v, a in sorted(src6)])
        add("nat_private", sorted(nat))
        add("snat4", [f"{priv} : {pub}" for priv, pub in sorted(nat.items())])
        add("dnat4", [f"{pub} : {priv}" for priv, pub in sorted(nat.items())])
        nft(self.vpc_ns, "\n".join(lines) + "\n")
        self.filter_state = state
        self.nat_public = nat_public

    def drop_counts(self) -> dict[str, int]:
        """Packets dropped by the source/destination check and by the internet gateway so far."""
        r = subprocess.run(["ip", "netns", "exec", self.vpc_ns, "nft", "-j", "list", "counters", "table", "inet",
                            NFT_TABLE], capture_output=True, text=True, check=False)
        out: dict[str, int] = {}
        try:
            import json

            for item in json.loads(r.stdout).get("nftables", []):
                c = item.get("counter")
                if c:
                    out[c["name"]] = int(c.get("packets", 0))
        except ValueError:
            pass
        return {"source_dest_check": out.get("sdc_dropped", 0), "internet_gateway": out.get("igw_dropped", 0)}

    @staticmethod
    def _moved(link: Link, w: dict[str, Any]) -> bool:
        return link.node != w["node"] or link.index != w["index"]

    def _vname(self, eni_id: str) -> str:
        return "v" + eni_id.split("-", 1)[-1][-13:]

    def _add_link(self, eni_id: str, w: dict[str, Any]) -> Link | None:
        ns = self.node_ns[w["node"]]
        vname = self._vname(eni_id)
        dev = f"eth{w['index']}"
        cmds = [
            # The node side is born with the ENI's MAC, so nobody ever sees it with another one.
            f"link add {vname} type veth peer name {dev} address {w['mac']} netns {ns}",
            f"addr add {w['gateway']}/32 dev {vname}",
            f"link set {vname} up",
            f"ntable change name arp_cache dev {vname} proxy_delay 0",
        ]
        if w["has_v6"]:
            cmds.insert(2, f"addr add fe80::1/64 dev {vname} nodad")
        errs = ip_batch(self.vpc_ns, cmds)
        if "File exists" in errs and not link_exists(self.vpc_ns, vname):
            log.warning("could not plug %s into %s: %s", eni_id, ns, errs)
            return None
        node_cmds: list[str] = []
        if w["index"] == 0:
            node_cmds += [
                f"addr add {w['primary']}/{w['plen']} dev {dev}",
                f"link set {dev} up",
                f"route replace default via {w['gateway']} dev {dev}",
            ]
        ip_batch(ns, node_cmds)
        log.info("plugged %s as %s in %s (peer %s)", eni_id, dev, ns, vname)
        return Link(eni_id, w["node"], w["index"], w["mac"], vname)

    def _remove_link(self, link: Link) -> None:
        ip_batch(self.vpc_ns, [f"link del {link.vname}"])
        log.info("unplugged %s (eth%d of %s)", link.eni_id, link.index, link.node)

    def _sync_routes(self, link: Link, w: dict[str, Any]) -> None:
        v = link.vname
        p = w["primary"]
        routes: dict[str, str] = {f"{p}/32": f"{p}/32 dev {v}"}
        neigh = {f"{p} lladdr {w['mac']} dev {v} nud permanent"}
        for a in w["ipv4"]:
            if a != p:
                routes[f"{a}/32"] = f"{a}/32 via {p} dev {v} onlink"
        for pre in w["prefixes"]:
            routes[pre] = f"{pre} via {p} dev {v} onlink"
        if w["ipv6"] or w["v6prefixes"]:
            ll = link_local_of(w["mac"])
            neigh.add(f"{ll} lladdr {w['mac']} dev {v} nud permanent")
            for a in w["ipv6"]:
                routes[f"{a}/128"] = f"{a}/128 via {ll} dev {v}"
            for pre in w["v6prefixes"]:
                routes[pre] = f"{pre} via {ll} dev {v}"
        cmds = [f"neigh replace {n}" for n in sorted(neigh - link.neigh)]
        cmds += [f"route del {d} dev {v}" for d in link.routes if d not in routes]
        cmds += [f"route replace {r}" for d, r in routes.items() if link.routes.get(d) != r]
        if cmds:
            ip_batch(self.vpc_ns, cmds)
            link.routes = routes
            link.neigh = neigh
        if link.index == 0 and w["has_v6"]:
            self._sync_node_ipv6(link, w)

    def _sync_node_ipv6(self, link: Link, w: dict[str, Any]) -> None:
        """Like an instance's boot-time DHCPv6 and router advertisement: eth0 gets the primary ENI's first IPv6
        address (/128) and a default route via the router's fe80::1."""
        ns = self.node_ns.get(link.node)
        want = w["ipv6"][0] if w["ipv6"] else None
        if ns is None or want == link.node_ipv6:
            return
        cmds = []
        if link.node_ipv6:
            cmds.append(f"addr del {link.node_ipv6}/128 dev eth0")
        if want:
            cmds += [f"addr add {want}/128 dev eth0 nodad", "route replace ::/0 via fe80::1 dev eth0"]
        ip_batch(ns, cmds)
        link.node_ipv6 = want


def link_exists(ns: str, name: str) -> bool:
    r = subprocess.run(["ip", "-n", ns, "link", "show", name], capture_output=True, check=False)
    return r.returncode == 0
