"""IMDSv2 for one simulated instance, served from the moto state of the same process.

A `NodeImds` owns the token table and the view of the instance's metadata. It can serve several listeners at once
(a loopback port, and 169.254.169.254:80 inside the node's network namespace). `lag_seconds` makes the view trail
EC2: a change shows only after that many seconds, as real IMDS can.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600


def listing(tree: dict[str, str], prefix: str) -> list[str] | None:
    """Children of directory `prefix` ("" or ending in "/"): leaves by name, directories with a trailing "/"."""
    children: list[str] = []
    seen = set()
    for key in tree:
        if not key.startswith(prefix) or key == prefix:
            continue
        rest = key[len(prefix) :]
        head, sep, _ = rest.partition("/")
        child = head + ("/" if sep else "")
        if child not in seen:
            seen.add(child)
            children.append(child)
    return children or None


class NodeImds:
    def __init__(self, name: str, snapshot: Callable[[], dict[str, str] | None]):
        self.name = name
        self._snapshot = snapshot
        self.tokens: dict[str, float] = {}
        self.lag_seconds = 0.0
        self.history: list[tuple[float, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.servers: list[ThreadingHTTPServer] = []
        self.endpoints: list[str] = []
        self.requests = 0
        # Injected faults: {"path": prefix below /latest/, "status", "latency_ms", "drop", "count"}.
        self.faults: list[dict[str, Any]] = []

    def take_fault(self, path: str) -> dict[str, Any] | None:
        with self.lock:
            for f in self.faults:
                if not path.startswith(f.get("path") or ""):
                    continue
                if f.get("count") is not None:
                    if f["count"] <= 0:
                        continue
                    f["count"] -= 1
                f["hits"] = f.get("hits", 0) + 1
                return f
        return None

    # -- view ------------------------------------------------------------------------------------------------------

    def record(self, now: float) -> None:
        """Called by the sim's poller: remembers the current view for the lag knob."""
        tree = self._snapshot()
        if tree is None:
            return
        with self.lock:
            if not self.history or self.history[-1][1] != tree:
                self.history.append((now, tree))
                # Keep what the largest lag might still need, plus the newest entry older than that.
                horizon = now - max(self.lag_seconds, 1.0) - 60
                while len(self.history) > 2 and self.history[1][0] < horizon:
                    self.history.pop(0)

    def view(self) -> dict[str, str] | None:
        if self.lag_seconds <= 0:
            return self._snapshot()
        cutoff = time.time() - self.lag_seconds
        with self.lock:
            chosen = None
            for t, tree in self.history:
                if t <= cutoff:
                    chosen = tree
            if chosen is None and self.history:
                chosen = self.history[0][1]
        return chosen if chosen is not None else self._snapshot()

    # -- serving ---------------------------------------------------------------------------------------------------

    def serve_socket(self, sock: socket.socket, endpoint: str) -> None:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate sends; without TCP_NODELAY a keep-alive client
            # waits out the peer's delayed ACK (~40 ms) on every read.
            disable_nagle_algorithm = True
            server_version = "EC2ws"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def reply(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def faulted(self) -> bool:
                path = self.path.split("?")[0]
                f = imds.take_fault(path[len("/latest/") :] if path.startswith("/latest/") else path)
                if f is None:
                    return False
                if f.get("latency_ms"):
                    time.sleep(float(f["latency_ms"]) / 1000.0)
                if f.get("drop"):
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return True
                if f.get("status"):
                    self.reply(int(f["status"]), "")
                    return True
                return False

            def do_PUT(self) -> None:  # noqa: N802 - stdlib naming
                imds.requests += 1
                if self.faulted():
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path.split("?")[0] != TOKEN_PATH:
                    self.reply(405 if self.path.startswith("/latest/") else 404, "")
                    return
                if self.headers.get("X-Forwarded-For"):
                    self.reply(403, "")
                    return
                raw = self.headers.get(TTL_HEADER)
                try:
                    ttl = int(raw) if raw is not None else -1
                except ValueError:
                    ttl = -1
                if ttl < 1 or ttl > MAX_TTL:
                    self.reply(400, "")
                    return
                token = secrets.token_urlsafe(40)
                with imds.lock:
                    now = time.time()
                    imds.tokens = {t: e for t, e in imds.tokens.items() if e > now}
                    imds.tokens[token] = now + ttl
                self.reply(200, token, {TTL_HEADER: str(ttl)})

            def do_GET(self) -> None:  # noqa: N802
                imds.requests += 1
                if self.faulted():
                    return
                token = self.headers.get(TOKEN_HEADER)
                with imds.lock:
                    expiry = imds.tokens.get(token or "")
                if expiry is None or expiry <= time.time():
                    self.reply(401, "")
                    return
                path = self.path.split("?")[0]
                if not path.startswith("/latest/"):
                    if path in ("/", ""):
                        self.reply(200, "latest")
                    else:
                        self.reply(404, "")
                    return
                key = path[len("/latest/") :]
                tree = imds.view()
                if tree is None:
                    self.reply(404, "")
                    return
                if key in tree:
                    body = tree[key]
                    ctype = {"Content-Type": "application/json"} if body.startswith("{") else {}
                    self.reply(200, body, ctype)
                    return
                directory = key if key.endswith("/") or key == "" else key + "/"
                kids = listing(tree, directory)
                if kids is None:
                    self.reply(404, "")
                    return
                self.reply(200, "\n".join(kids))

            do_HEAD = do_GET

            def do_POST(self) -> None:  # noqa: N802
                self.reply(405, "")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.server_address = sock.getsockname()
        server.daemon_threads = True
        sock.listen(64)
        threading.Thread(target=server.serve_forever, name=f"imds-{self.name}", daemon=True).start()
        self.servers.append(server)
        self.endpoints.append(endpoint)

    def serve_loopback(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.serve_socket(sock, endpoint)
        return endpoint

    def close(self) -> None:
        for s in self.servers:
            s.shutdown()
            s.server_close()
        self.servers = []


def metadata_tree(inst: Any, backend: Any, region: str, role: str | None, creds: dict[str, str] | None) -> dict[str, str]:
    """Every IMDS key a client can read for instance `inst` (a moto Instance), as path -> value."""
    t: dict[str, str] = {}
    md = "meta-data/"
    primary = inst.nics.get(0)
    t[md + "instance-id"] = inst.id
    t[md + "instance-type"] = inst.instance_type
    t[md + "ami-id"] = inst.image_id
    t[md + "placement/availability-zone"] = inst._placement.zone
    t[md + "placement/region"] = region
    t[md + "services/domain"] = "amazonaws.com"
    t[md + "services/partition"] = "aws"
    if primary is not None:
        t[md + "mac"] = primary.mac_address
        t[md + "local-ipv4"] = primary.private_ip_address
        host = "ip-" + primary.private_ip_address.replace(".", "-") + f".{region}.compute.internal"
        t[md + "local-hostname"] = host
        t[md + "hostname"] = host
        if primary.public_ip:
            t[md + "public-ipv4"] = primary.public_ip
    for index, eni in sorted(inst.nics.items()):
        if getattr(eni, "attach_at", None) is not None:
            continue  # still attaching: the instance does not see it yet
        p = f"{md}network/interfaces/macs/{eni.mac_address}/"
        subnet = eni.subnet
        vpc = backend.get_vpc(subnet.vpc_id)
        t[p + "mac"] = eni.mac_address
        t[p + "interface-id"] = eni.id
        t[p + "device-number"] = str(index)
        t[p + "network-card"] = str(getattr(eni, "network_card_index", 0))
        t[p + "owner-id"] = backend.account_id
        t[p + "subnet-id"] = subnet.id
        t[p + "vpc-id"] = subnet.vpc_id
        groups = list(eni.group_set)
        t[p + "security-group-ids"] = "\n".join(g.id for g in groups)
        t[p + "security-groups"] = "\n".join(g.name for g in groups)
        addrs = [eni.private_ip_address] + [
            a["PrivateIpAddress"] for a in eni.private_ip_addresses if a["PrivateIpAddress"] != eni.private_ip_address
        ]
        t[p + "local-ipv4s"] = "\n".join(addrs)
        if eni.public_ip:
            t[p + "public-ipv4s"] = eni.public_ip
        prefixes = [x["Ipv4Prefix"] for x in getattr(eni, "ipv4_prefixes", [])]
        if prefixes:
            t[p + "ipv4-prefix"] = "\n".join(prefixes)
        if eni.ipv6_addresses:
            t[p + "ipv6s"] = "\n".join(eni.ipv6_addresses)
        v6prefixes = [x["Ipv6Prefix"] for x in getattr(eni, "ipv6_prefixes", [])]
        if v6prefixes:
            t[p + "ipv6-prefix"] = "\n".join(v6prefixes)
        t[p + "subnet-ipv4-cidr-block"] = subnet.cidr_block
        v6 = [a.get("ipv6CidrBlock") for a in subnet.ipv6_cidr_block_associations.values() if a.get("ipv6CidrBlock")]
        if v6:
            t[p + "subnet-ipv6-cidr-blocks"] = "\n".join(v6)
        vpc_v4 = [
            a.get("cidr_block")
            for a in vpc.get_cidr_block_association_set()
            if a.get("cidr_block_state", {}).get("state") != "disassociated"
        ]
        t[p + "vpc-ipv4-cidr-block"] = vpc.cidr_block
        t[p + "vpc-ipv4-cidr-blocks"] = "\n".join(c for c in vpc_v4 if c) or vpc.cidr_block
        vpc_v6 = [
            a.get("cidr_block")
            for a in vpc.get_cidr_block_association_set(ipv6=True)
            if a.get("cidr_block") and a.get("cidr_block_state", {}).get("state") != "disassociated"
        ]
        if vpc_v6:
            t[p + "vpc-ipv6-cidr-blocks"] = "\n".join(vpc_v6)
    if role and creds:
        t[md + "iam/info"] = json.dumps(
            {
                "Code": "Success",
                "LastUpdated": creds["LastUpdated"],
                "InstanceProfileArn": f"arn:aws:iam::{backend.account_id}:instance-profile/{role}",
                "InstanceProfileId": "AIPA" + role.upper()[:16],
            }
        )
        t[md + "iam/security-credentials/" + role] = json.dumps(creds)
    doc = {
        "accountId": backend.account_id,
        "architecture": "x86_64",
        "availabilityZone": inst._placement.zone,
        "imageId": inst.image_id,
        "instanceId": inst.id,
        "instanceType": inst.instance_type,
        "privateIp": primary.private_ip_address if primary is not None else None,
        "region": region,
        "version": "2017-09-30",
    }
    t["dynamic/instance-identity/document"] = json.dumps(doc)
    return t
