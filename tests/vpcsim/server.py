"""The VPC-in-a-box process: moto EC2 (patched, SigV4 on) + control API + IMDS per node + namespaces.

One HTTP server on 127.0.0.1 serves EC2 (the query API, as moto, wrapped by a middleware that logs calls, injects
faults and puts errors into EC2's shape) and the control API under /vpcsim/. All moto access is serialised by one
lock: moto is not thread-safe, and the IMDS and hot-plug threads read the same state.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import random
import re
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Any, Callable
from urllib.parse import parse_qs, parse_qsl, urlencode

from . import ec2fidelity, identity, imds

ACCOUNT_ID = "123456789012"
USER_NAME = "vpc-cni-node"
ROLE_NAME = "vpc-cni-node-role"
VPC_CIDR = "10.0.0.0/16"
# An Amazon Linux HVM image of moto's set (the default one is a Windows image: Platform "windows").
NODE_AMI = "ami-760aaa0f"
# What EKS node images launch with: IMDSv2 only (the sim's IMDS refuses tokenless reads), hop limit 2.
NODE_METADATA_OPTIONS = {"HttpTokens": "required", "HttpPutResponseHopLimit": "2", "HttpEndpoint": "enabled"}
# The header that carries the control token; the control API and moto's own API refuse requests without it.
CONTROL_TOKEN_HEADER = "X-Vpcsim-Token"

# Seed 001's IAM policy (the upstream README): exactly these actions, CreateTags only on network interfaces.
NODE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ec2:AssignPrivateIpAddresses",
                "ec2:AttachNetworkInterface",
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeTags",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DetachNetworkInterface",
                "ec2:ModifyNetworkInterfaceAttribute",
                "ec2:UnassignPrivateIpAddresses",
            ],
            "Resource": "*",
        },
        {"Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": ["arn:aws:ec2:*:*:network-interface/*"]},
    ],
}

# Seed 001's policy plus what ipamd also calls in IPv6 mode and for subnet discovery (upstream docs/iam-policy.md,
# AmazonEKS_CNI_Policy / AmazonEKS_CNI_IPv6_Policy).
EXTENDED_ACTIONS = [
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:AssignIpv6Addresses",
    "ec2:UnassignIpv6Addresses",
]
EXTENDED_POLICY = json.loads(json.dumps(NODE_POLICY))
EXTENDED_POLICY["Statement"][0]["Action"] = NODE_POLICY["Statement"][0]["Action"] + EXTENDED_ACTIONS
EXTENDED_USER = "vpc-cni-node-extended"
POLICIES = {"seed001": NODE_POLICY, "extended": EXTENDED_POLICY}

# Actions whose real EC2 response carries <return>true</return> (moto leaves it out).
RETURN_TRUE_ACTIONS = {
    "ModifyNetworkInterfaceAttribute",
    "UnassignPrivateIpAddresses",
    "DeleteNetworkInterface",
    "DetachNetworkInterface",
    "CreateTags",
    "DeleteTags",
    "ModifyInstanceAttribute",
    "ResetNetworkInterfaceAttribute",
}
READ_ONLY_PREFIXES = ("Describe", "Get", "List")

STATUS_FOR_CODE = {
    "AuthFailure": 401,
    "UnauthorizedOperation": 403,
    "RequestLimitExceeded": 503,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "Unavailable": 503,
}

log = logging.getLogger("vpcsim")


def ec2_error_xml(code: str, message: str, request_id: str | None = None) -> bytes:
    esc = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    rid = request_id or str(uuid.uuid4())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{esc}</Message></Error></Errors>"
        f"<RequestID>{rid}</RequestID></Response>"
    ).encode()


def ec2_operation_names() -> set[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("ec2")
    return set(model.operation_names)


class Fault:
    """One injected behaviour for matching calls: error, latency, or a dropped connection."""

    def __init__(self, spec: dict[str, Any], fault_id: int):
        self.id = fault_id
        self.action = spec.get("action", "*")
        self.code = spec.get("code")
        self.status = int(spec.get("status") or STATUS_FOR_CODE.get(self.code or "", 400))
        self.message = spec.get("message") or (f"Injected fault: {self.code}" if self.code else "")
        self.latency_ms = float(spec.get("latency_ms") or 0)
        self.drop = bool(spec.get("drop"))
        self.lose_answer = bool(spec.get("lose_answer"))
        self.remaining = spec.get("count")
        self.probability = float(spec.get("probability", 1.0))
        self.hits = 0
        if self.remaining is not None:
            self.remaining = int(self.remaining)
        if not (self.code or self.latency_ms or self.drop or self.lose_answer):
            raise ValueError(
                "a fault needs one of: code (with optional status, message), latency_ms, drop, lose_answer"
            )
        if self.lose_answer and (self.code or self.drop):
            raise ValueError("lose_answer (the action runs, its answer is lost) excludes code and drop")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within 0..1, got {self.probability}")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "code": self.code,
            "status": self.status if self.code else None,
            "message": self.message or None,
            "latency_ms": self.latency_ms,
            "drop": self.drop,
            "lose_answer": self.lose_answer,
            "count": self.remaining,
            "probability": self.probability,
            "hits": self.hits,
        }


class Sim:
    def __init__(
        self,
        name: str,
        state_dir: str,
        region: str = "us-west-2",
        netns: bool = True,
        watch_pid: int | None = None,
        port: int = 0,
        policy: str = "seed001",
        seed: int | None = None,
        allocation: str = "scattered",
        attach_delay: float = ec2fidelity.DEFAULT_ATTACH_DELAY,
    ):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose one of {sorted(POLICIES)}")
        self.policy = policy
        self.name = name
        self.prefix = name
        self.state_dir = state_dir
        self.state_path = os.path.join(state_dir, f"{name}.json")
        self.region = region
        self.use_netns = netns
        self.watch_pid = watch_pid
        self.port = port
        self.lock = threading.RLock()
        self.calls: list[dict[str, Any]] = []
        self.call_seq = 0
        self.calls_lock = threading.Lock()
        self.faults: list[Fault] = []
        self.fault_seq = 0
        self.nodes: dict[str, dict[str, Any]] = {}
        self.node_imds: dict[str, imds.NodeImds] = {}
        self.node_servers: dict[str, list[Any]] = {}
        self.launch_lock = threading.Lock()
        self.node_seq = 0
        self.subnets: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.kick = threading.Event()
        self.sync_gen = 0
        self.sync_cond = threading.Condition()
        self.net: Any = None
        self.role_creds: dict[str, Any] = {}
        self.issuer = identity.Issuer(ACCOUNT_ID, region, ROLE_NAME)
        self.started_at = time.time()
        self.startup_seconds = 0.0
        self.default_lag = 0.0
        self.ready = False
        self.control_token = secrets.token_urlsafe(32)
        if allocation not in ec2fidelity.ALLOCATIONS:
            raise ValueError(f"allocation must be one of {ec2fidelity.ALLOCATIONS}, got {allocation!r}")
        if attach_delay < 0:
            raise ValueError("attach delay seconds must be >= 0")
        ec2fidelity.SETTINGS["allocation"] = allocation
        ec2fidelity.SETTINGS["attach_delay"] = float(attach_delay)
        ec2fidelity.ALLOCATOR.reseed(seed)
        self.public_seq = 0

    # -- moto access -----------------------------------------------------------------------------------------------

    @property
    def ec2(self) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[ACCOUNT_ID][self.region]

    def setup_iam(self) -> None:
        """Users for both policies; the node role whose keys IMDS, IRSA (web identity) and Pod Identity hand out."""
        from moto.iam.models import iam_backends

        iam = iam_backends[ACCOUNT_ID]["global"]
        self.credentials: dict[str, dict[str, str]] = {}
        for policy_name, user in (("seed001", USER_NAME), ("extended", EXTENDED_USER)):
            iam.create_user(self.region, user)
            iam.put_user_policy(user, "vpc-cni", json.dumps(POLICIES[policy_name]))
            key = iam.create_access_key(user)
            self.credentials[policy_name] = {
                "user": user,
                "access_key_id": key.access_key_id,
                "secret_access_key": key.secret_access_key,
            }
        chosen = self.credentials[self.policy]
        self.access_key_id = chosen["access_key_id"]
        self.secret_access_key = chosen["secret_access_key"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ]
            + self.issuer.trust_statements(),
        }
        self.issuer.register(iam)
        iam.create_role(ROLE_NAME, json.dumps(trust), "/", None, "vpc-cni node role", [], None)
        iam.put_role_policy(ROLE_NAME, "vpc-cni", json.dumps(POLICIES[self.policy]))

    def enable_auth(self) -> None:
        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin

        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0

    def role_credentials(self) -> dict[str, str]:
        """Temporary keys of the node role (STS AssumeRole in moto), renewed when less than 15 minutes are left."""
        from moto.sts.models import sts_backends

        now = time.time()
        if not self.role_creds or self.role_creds["_expiry"] - now < 900:
            sts = sts_backends[ACCOUNT_ID]["global"]
            role = sts.assume_role(
                region_name=self.region,
                role_session_name="i-node",
                role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{ROLE_NAME}",
                policy=None,
                duration=21600,
                external_id=None,
            )
            expiry = role.expiration.timestamp()
            self.role_creds = {
                "Code": "Success",
                "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "Type": "AWS-HMAC",
                "AccessKeyId": role.access_key_id,
                "SecretAccessKey": role.secret_access_key,
                "Token": role.session_token,
                "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry)),
                "_expiry": expiry,
            }
        return {k: v for k, v in self.role_creds.items() if not k.startswith("_")}

    # -- start / stop ----------------------------------------------------------------------------------------------

    def start(self, nodes: list[str] | None = None) -> None:
        from werkzeug.serving import make_server
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        t0 = time.time()
        ec2fidelity.install()
        identity.install()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.operations = ec2_operation_names()
        self.moto_app = DomainDispatcherApplication(create_backend_app)
        self.http = make_server("127.0.0.1", self.port, self.wsgi, threaded=True)
        self.port = self.http.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.http.serve_forever, name="http", daemon=True).start()
        self.setup_iam()
        self.enable_auth()
        # The sim's own set-up goes straight to moto's backend (no HTTP, no boto3 client: seconds faster).
        with self.lock:
            vpc = self.ec2.create_vpc(cidr_block=VPC_CIDR, amazon_provided_ipv6_cidr_block=True)
            self.vpc_id = vpc.id
            v6 = [a["cidr_block"] for a in vpc.get_cidr_block_association_set(ipv6=True)]
        self.vpc_ipv6 = v6[0] if v6 else None
        self.add_subnet({"cidr": "10.0.0.0/20", "az": self.region + "a", "ipv6": True, "name": "a"})
        self.add_subnet({"cidr": "10.0.16.0/20", "az": self.region + "b", "ipv6": True, "name": "b"})
        self.add_subnet({"cidr": "10.0.32.0/20", "az": self.region + "a", "ipv6": False, "name": "v4only"})
        if self.use_netns:
            from . import network

            self.net = network.Network(self)
            self.net.setup()
        threading.Thread(target=self.poll_loop, name="poll", daemon=True).start()
        if self.watch_pid:
            threading.Thread(target=self.watch_loop, name="watch", daemon=True).start()
        for itype in nodes or []:
            self.launch_node({"type": itype})
        self.startup_seconds = time.time() - t0
        self.ready = True
        self.write_state()

    def watch_loop(self) -> None:
        while not self.stop_event.wait(1.0):
            try:
                os.kill(self.watch_pid, 0)  # type: ignore[arg-type]
            except ProcessLookupError:
                log.warning("watched pid %s is gone: stopping", self.watch_pid)
                self.stop_event.set()
                return
            except PermissionError:
                pass

    def shutdown(self) -> None:
        """Removes the namespaces; listeners and threads end with the process (closing each would cost 0.5 s)."""
        self.stop_event.set()
        if self.net is not None:
            try:
                self.net.teardown()
            except Exception:  # noqa: BLE001 - stop falls back to cleanup by prefix
                log.exception("network teardown")

    # -- subnets and nodes -----------------------------------------------------------------------------------------

    def add_subnet(self, spec: dict[str, Any]) -> dict[str, Any]:
        import ipaddress

        cidr = spec.get("cidr")
        if not cidr:
            raise ValueError("subnet needs 'cidr' (inside 10.0.0.0/16, e.g. 10.0.64.0/24)")
        net = ipaddress.IPv4Network(cidr)
        az = spec.get("az") or self.region + "a"
        v6cidr = None
        if spec.get("ipv6", True) and self.vpc_ipv6:
            vnet = ipaddress.IPv6Network(self.vpc_ipv6)
            index = len(self.subnets)
            v6cidr = str(list(vnet.subnets(new_prefix=64))[index + 1]) if vnet.prefixlen <= 64 else None
        tags = {"Name": spec.get("name") or cidr}
        tags.update(spec.get("tags") or {})
        with self.lock:
            sub = self.ec2.create_subnet(
                self.vpc_id, cidr, ipv6_cidr_block=v6cidr, availability_zone=az, tags={"subnet": tags}
            )
        info = {
            "id": sub.id,
            "name": spec.get("name") or cidr,
            "cidr": cidr,
            "az": az,
            "ipv6_cidr": v6cidr,
            "gateway": str(net.network_address + 1),
        }
        self.subnets.append(info)
        self.kick.set()
        self.write_state()
        return info

    def find_subnet(self, ref: str | None) -> dict[str, Any]:
        if not ref:
            return self.subnets[0]
        for s in self.subnets:
            if ref in (s["id"], s["name"], s["cidr"]):
                return s
        raise ValueError(f"unknown subnet {ref!r}; known: {[s['name'] + '=' + s['id'] for s in self.subnets]}")

    def launch_node(self, spec: dict[str, Any]) -> dict[str, Any]:
        with self.launch_lock:
            return self._launch_node(spec)

    def _launch_node(self, spec: dict[str, Any]) -> dict[str, Any]:
        from moto.ec2.models.instance_types import INSTANCE_TYPES

        itype = spec.get("type") or "m5.large"
        if itype not in INSTANCE_TYPES:
            raise ValueError(f"unknown instance type {itype!r} (moto knows {len(INSTANCE_TYPES)} types, e.g. m5.large)")
        subnet = self.find_subnet(spec.get("subnet"))
        self.node_seq += 1
        name = spec.get("name") or f"n{self.node_seq}"
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists")
        public_ip = None
        if spec.get("public_ip", True):
            import ipaddress

            from . import network

            pool = ipaddress.IPv4Network(network.PUBLIC_POOL)
            self.public_seq += 1
            if self.public_seq + 10 >= pool.num_addresses - 1:
                raise ValueError("no public IPv4 addresses left for a node; launch it with public_ip false")
            public_ip = str(pool.network_address + 10 + self.public_seq)
        with self.lock:
            reservation = self.ec2.run_instances(
                NODE_AMI,
                1,
                None,
                [],
                **run_instances_kwargs(self.region, itype, subnet["id"], {"Name": f"{self.prefix}-{name}"}),
            )
            instance = reservation.instances[0]
            iid = instance.id
            # A public subnet's instance: a public IPv4 address on its primary ENI's primary address.
            instance.nics[0].public_ip = public_ip
            inst = {
                "PrivateIpAddress": instance.nics[0].private_ip_address,
                "NetworkInterfaces": [
                    {"MacAddress": instance.nics[0].mac_address, "NetworkInterfaceId": instance.nics[0].id}
                ],
            }
        node_imds = imds.NodeImds(name, lambda iid=iid: self.snapshot(iid))
        loop_ep = node_imds.serve_loopback()
        node_imds.lag_seconds = self.default_lag
        node = {
            "name": name,
            "instance_id": iid,
            "type": itype,
            "subnet_id": subnet["id"],
            "az": subnet["az"],
            "primary_ip": inst["PrivateIpAddress"],
            "public_ip": public_ip,
            "mac": inst["NetworkInterfaces"][0]["MacAddress"],
            "primary_eni": inst["NetworkInterfaces"][0]["NetworkInterfaceId"],
            "imds_endpoint": loop_ep,
            "namespace": None,
            "imds_netns_endpoint": None,
            "ec2_netns_endpoint": None,
        }
        self.node_imds[name] = node_imds
        if self.net is not None:
            from . import network

            ns = self.net.add_node(name, node)
            node["namespace"] = ns
            node_imds.serve_socket(self.net.imds_socket(ns), "http://169.254.169.254")
            node["imds_netns_endpoint"] = "http://169.254.169.254"
            self.serve_ec2_in(ns)
            node["ec2_netns_endpoint"] = f"http://{network.EC2_ADDR}"
        node["env"] = dict(self.base_env(), AWS_EC2_METADATA_SERVICE_ENDPOINT=loop_ep)
        if node["namespace"]:
            node["netns_env"] = dict(
                self.base_env(),
                AWS_ENDPOINT_URL_EC2=node["ec2_netns_endpoint"],
                AWS_EC2_ENDPOINT=node["ec2_netns_endpoint"],
                AWS_EC2_METADATA_SERVICE_ENDPOINT=node["imds_netns_endpoint"],
            )
        with self.lock:
            self.nodes[name] = node
        node_imds.record(time.time())
        self.sync()
        self.write_state()
        return node

    def serve_ec2_in(self, ns: str) -> None:
        """EC2 (and the control API) on 169.254.170.10:80 inside a node namespace, for ipamd running there."""
        from werkzeug.serving import make_server

        from . import network

        sock = self.net.ec2_socket(ns)
        srv = make_server(network.EC2_ADDR, 80, self.wsgi, threaded=True, fd=sock.fileno())
        sock.close()  # the server holds its own duplicate
        threading.Thread(target=srv.serve_forever, name=f"ec2-{ns}", daemon=True).start()
        self.node_servers.setdefault(ns, []).append(srv)

    def terminate_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            raise KeyError(f"unknown node {name!r}; known: {sorted(self.nodes)}")
        with self.lock:
            self.ec2.terminate_instances([node["instance_id"]])
        servers = self.node_servers.pop(node.get("namespace") or "", [])
        node_imds = self.node_imds.pop(name)

        def close() -> None:
            # Sockets hold their namespace alive: close every listener inside the node.
            node_imds.close()
            for srv in servers:
                srv.shutdown()
                srv.server_close()

        threading.Thread(target=close, daemon=True).start()
        if self.net is not None:
            self.net.remove_node(name)
        del self.nodes[name]
        self.write_state()

    def snapshot(self, instance_id: str) -> dict[str, str] | None:
        with self.lock:
            try:
                inst = self.ec2.get_instance(instance_id)
            except Exception:  # noqa: BLE001 - terminated and gone
                return None
            return imds.metadata_tree(inst, self.ec2, self.region, ROLE_NAME, self.role_credentials())

    # -- polling: IMDS history and hot-plug ------------------------------------------------------------------------

    def poll_loop(self) -> None:
        while not self.stop_event.is_set():
            self.kick.wait(0.2)
            self.kick.clear()
            try:
                now = time.time()
                with self.lock:
                    ec2fidelity.finish_detaches(self.ec2, now)
                for n in list(self.node_imds.values()):
                    n.record(now)
                if self.net is not None:
                    self.net.sync()
            except Exception:  # noqa: BLE001 - keep polling; the log shows what failed
                log.exception("poll")
            with self.sync_cond:
                self.sync_gen += 1
                self.sync_cond.notify_all()

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until one full poll pass started after this call has finished."""
        with self.sync_cond:
            target = self.sync_gen + 2
            self.kick.set()
            deadline = time.time() + timeout
            while self.sync_gen < target and time.time() < deadline:
                self.sync_cond.wait(0.1)
                self.kick.set()

    # -- state file ------------------------------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_EC2": self.endpoint,
            "AWS_EC2_ENDPOINT": self.endpoint,
        }

    def state(self) -> dict[str, Any]:
        env = self.base_env()
        if self.nodes:
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = next(iter(self.nodes.values()))["imds_endpoint"]
        return {
            "name": self.name,
            "prefix": self.prefix,
            "pid": os.getpid(),
            "ready": self.ready,
            "region": self.region,
            "account_id": ACCOUNT_ID,
            "port": self.port,
            "endpoint": self.endpoint,
            "control_url": self.endpoint + "/vpcsim",
            "control_token": self.control_token,
            "control_token_header": CONTROL_TOKEN_HEADER,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "iam_user": self.credentials[self.policy]["user"],
            "iam_role": ROLE_NAME,
            "role_arn": self.issuer.role_arn,
            "sts_endpoint": self.endpoint,
            "pod_identity_endpoint": self.endpoint + identity.POD_IDENTITY_PATH,
            "web_identity": {
                "role_arn": self.issuer.role_arn,
                "issuer": self.issuer.issuer,
                "provider_arn": self.issuer.provider_arn,
                "audience": identity.STS_AUDIENCE,
                "subject": identity.AWS_NODE_SUBJECT,
            },
            "pod_identity": {
                "audience": identity.POD_IDENTITY_AUDIENCE,
                "associations": dict(self.issuer.associations),
            },
            "policy_name": self.policy,
            "policy": POLICIES[self.policy],
            "credentials": self.credentials,
            "vpc": {"id": self.vpc_id, "cidr": VPC_CIDR, "ipv6_cidr": self.vpc_ipv6},
            "subnets": self.subnets,
            "namespaces": self.net.namespaces() if self.net is not None else {},
            "internet": self.net.internet_info() if self.net is not None else None,
            "nodes": list(self.nodes.values()),
            "env": env,
            "imds_lag_seconds": self.default_lag,
            "ec2": self.ec2_settings(),
            "startup_seconds": round(self.startup_seconds, 3),
            "log": os.path.join(self.state_dir, f"{self.name}.log"),
        }

    def ec2_settings(self) -> dict[str, Any]:
        return {
            "attach_delay_seconds": ec2fidelity.SETTINGS["attach_delay"],
            "detach_delay_seconds": ec2fidelity.SETTINGS["detach_delay"],
            "allocation": ec2fidelity.SETTINGS["allocation"],
            "seed": ec2fidelity.ALLOCATOR.seed,
        }

    def write_state(self) -> None:
        os.makedirs(self.state_dir, exist_ok=True)
        tmp = self.state_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.state(), f, indent=1)
        os.replace(tmp, self.state_path)

    # -- WSGI ------------------------------------------------------------------------------------------------------

    def has_control_token(self, environ: dict[str, Any]) -> bool:
        given = environ.get("HTTP_" + CONTROL_TOKEN_HEADER.upper().replace("-", "_"), "")
        return hmac.compare_digest(given.encode(), self.control_token.encode())

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/vpcsim/") or path == "/vpcsim":
            return self.control(environ, start_response)
        if path.startswith("/moto-api"):
            if not self.has_control_token(environ):
                return self.refuse_control(start_response)
            with self.lock:
                return self.moto_app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        auth = environ.get("HTTP_AUTHORIZATION", "")
        params: dict[str, str] = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        ctype = environ.get("CONTENT_TYPE", "")
        if body and "x-www-form-urlencoded" in ctype:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action")
        scope = re.search(r"Credential=([^/,\s]*)/([^/]*)/([^/]*)/([^/]*)/([^,\s]*)", auth)
        access_key = scope.group(1) if scope else None
        region = scope.group(3) if scope else None
        service = scope.group(4) if scope else None
        if path == identity.POD_IDENTITY_PATH and not action:
            return self.pod_identity(environ, start_response)
        if action in identity.UNSIGNED_STS_ACTIONS and not auth:
            return self.sts_unsigned(environ, start_response, action, params)
        if scope is not None and service != "ec2":
            logged = {k: v for k, v in params.items() if k not in ("Action", "Version")}
            entry = self.log_call(action or "", logged, access_key, service or "")
            # The sim's STS answers as the regional endpoint of its region (and the global one, us-east-1).
            if service == "sts" and action and region in (self.region, "us-east-1"):
                return self.moto_call(environ, start_response, entry)
            return self.respond_error(
                start_response,
                entry,
                "AuthFailure",
                f"AWS was not able to validate the provided access credentials: the credential scope names service "
                f"'{service}' in '{region}'; this endpoint is ec2 (and sts) in '{self.region}'.",
                401,
            )
        if scope is not None and region != self.region:
            logged = {k: v for k, v in params.items() if k not in ("Action", "Version")}
            entry = self.log_call(action or "", logged, access_key, "ec2")
            return self.respond_error(
                start_response,
                entry,
                "AuthFailure",
                f"AWS was not able to validate the provided access credentials: credential should be scoped to a "
                f"valid region, not '{region}' (this endpoint is {self.region}).",
                401,
            )
        if not action:
            entry = self.log_call("", {}, access_key, "ec2")
            return self.respond_error(
                start_response, entry, "MissingAction", "The request must contain the parameter Action", 400
            )
        return self.ec2_call(environ, start_response, action, params, access_key)

    def moto_call(self, environ: dict[str, Any], start_response: Callable[..., Any], entry: dict[str, Any]) -> Any:
        """A call moto answers as it is (signed STS), with its status in the call log."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"] = status
            captured["headers"] = headers
            return lambda data: None

        with self.lock:
            chunks = self.moto_app(environ, capture)
            raw = b"".join(chunks)
            if hasattr(chunks, "close"):
                chunks.close()
        status = int(captured.get("status", "500").split()[0])
        entry["status"] = status
        if status >= 400:
            code_m = re.search(rb"<Code>([^<]*)</Code>", raw)
            entry["error"] = code_m.group(1).decode() if code_m else "InternalError"
        start_response(captured.get("status", "500 Internal Server Error"), captured.get("headers", []))
        return [raw]

    def refuse_control(self, start_response: Callable[..., Any]) -> Any:
        data = json.dumps(
            {"error": f"the control API needs the sim's control token in header {CONTROL_TOKEN_HEADER} "
                      "(state file field control_token)"}
        ).encode()
        start_response("401 Unauthorized", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def ec2_call(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        action: str,
        params: dict[str, str],
        access_key: str | None,
    ) -> Any:
        logged = {k: v for k, v in params.items() if k not in ("Action", "Version")}
        entry = self.log_call(action, logged, access_key, "ec2")
        fault = self.apply_fault(environ, entry, action)
        lost = fault is not None and fault.lose_answer
        if fault is not None and not lost:
            return self.respond_error(start_response, entry, fault.code or "InternalError", fault.message, fault.status)
        if not access_key:
            return self.respond_error(
                start_response, entry, "MissingAuthenticationToken", "Request is missing Authentication Token", 401
            )
        if action not in self.operations:
            return self.respond_error(
                start_response, entry, "InvalidAction", f"The action {action} is not valid for this web service.", 400
            )
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"] = status
            captured["headers"] = headers
            return lambda data: None

        with self.lock:
            ec2fidelity.finish_detaches(self.ec2, time.time())
            try:
                chunks = self.moto_app(environ, capture)
                raw = b"".join(chunks)
                if hasattr(chunks, "close"):
                    chunks.close()
            except Exception:  # noqa: BLE001 - becomes an EC2 InternalError, as a real service would answer
                log.error("moto raised on %s:\n%s", action, traceback.format_exc())
                return self.respond_error(start_response, entry, "InternalError", "An internal error has occurred", 500)
        status = int(captured.get("status", "500").split()[0])
        if status >= 400 or b"<Errors>" in raw[:400] or b"<ErrorResponse" in raw[:200]:
            code_m = re.search(rb"<Code>([^<]*)</Code>", raw)
            msg_m = re.search(rb"<Message>([^<]*)</Message>", raw, re.S)
            if code_m:
                code = code_m.group(1).decode()
                message = msg_m.group(1).decode() if msg_m else code
                message = message.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            else:
                log.error("moto answered %s on %s without an EC2 error: %r", status, action, raw[:300])
                code, message = "InternalError", "An internal error has occurred"
                status = 500
            if code == "AccessDenied":
                code = "UnauthorizedOperation"
                message = "You are not authorized to perform this operation. " + message
            status = STATUS_FOR_CODE.get(code, 400 if status < 500 else status)
            if lost:
                entry["status"] = status
                entry["error"] = code
                self.lose_answer(environ, entry)
            return self.respond_error(start_response, entry, code, message, status)
        # moto answers every call with the same request id; EC2's are unique.
        raw = raw.replace(b"<requestId>request-id</requestId>", f"<requestId>{uuid.uuid4()}</requestId>".encode(), 1)
        if action in RETURN_TRUE_ACTIONS and b"<return>" not in raw:
            raw = re.sub(rb"(</%sResponse>\s*)$" % action.encode(), rb"<return>true</return>\1", raw.rstrip())
        if entry is not None:
            entry["status"] = status
            entry["seconds"] = time.time() - entry["time"]
        if not action.startswith(READ_ONLY_PREFIXES):
            self.kick.set()
        if lost:
            self.lose_answer(environ, entry)
        headers = [(k, v) for k, v in captured.get("headers", []) if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(raw))))
        start_response(captured.get("status", "200 OK"), headers)
        return [raw]

    def lose_answer(self, environ: dict[str, Any], entry: dict[str, Any]) -> None:
        """The action has run (its effect stays); the client never hears the answer."""
        entry["lost"] = True
        entry.setdefault("status", 200)
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise ConnectionAbortedError("vpcsim: answer lost by fault injection (the action ran)")

    def log_call(self, action: str, params: dict[str, Any], access_key: str | None, service: str) -> dict[str, Any]:
        with self.calls_lock:
            self.call_seq += 1
            entry: dict[str, Any] = {
                "seq": self.call_seq,
                "time": time.time(),
                "service": service,
                "action": action,
                "params": params,
                "access_key_id": access_key,
            }
            self.calls.append(entry)
        return entry

    def apply_fault(self, environ: dict[str, Any], entry: dict[str, Any], action: str) -> Fault | None:
        """Latency and dropped connections of a matching fault; returns it when it also carries an error."""
        fault = self.pick_fault(action)
        if fault is None:
            return None
        entry["fault"] = fault.id
        if fault.latency_ms:
            time.sleep(fault.latency_ms / 1000.0)
        if fault.lose_answer:
            return fault
        if fault.drop:
            entry["status"] = 0
            entry["error"] = "dropped"
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            raise ConnectionAbortedError("vpcsim: connection dropped by fault injection")
        return fault if fault.code else None

    # -- workload identities: STS web identity (IRSA) and the EKS Pod Identity agent ---------------------------------

    def sts_unsigned(
        self, environ: dict[str, Any], start_response: Callable[..., Any], action: str, params: dict[str, str]
    ) -> Any:
        """STS AssumeRoleWithWebIdentity as STS checks it, answered by moto's STS; the token is never logged."""
        from moto.iam.models import iam_backends

        logged = {k: v for k, v in params.items() if k not in ("Action", "Version", "WebIdentityToken")}
        entry = self.log_call(action, logged, None, "sts")
        request_id = str(uuid.uuid4())

        def refuse(code: str, message: str, status: int) -> Any:
            entry["status"] = status
            entry["error"] = code
            body = identity.sts_error_xml(code, message, request_id)
            reason = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error"}.get(status, "Error")
            start_response(
                f"{status} {reason}", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))]
            )
            return [body]

        fault = self.apply_fault(environ, entry, action)
        if fault is not None:
            return refuse(fault.code or "InternalError", fault.message, fault.status)
        if params.get("Version") != identity.STS_VERSION:
            return refuse(
                "InvalidAction",
                f"Could not find operation {action} for version {params.get('Version') or '(none)'}; "
                f"STS speaks Version={identity.STS_VERSION}",
                400,
            )
        if action != "AssumeRoleWithWebIdentity":
            return refuse("InvalidAction", f"The sim's STS takes {action} only signed", 400)
        forwarded = {k: v for k, v in params.items() if k in identity.WEB_IDENTITY_PARAMS}
        body = urlencode(forwarded).encode()
        moto_environ = dict(environ)
        moto_environ.pop("HTTP_AUTHORIZATION", None)
        moto_environ.update(
            {
                "REQUEST_METHOD": "POST",
                "QUERY_STRING": "",
                "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
                "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": io.BytesIO(body),
            }
        )
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"] = status
            return lambda data: None

        with self.lock:
            try:
                claims = self.issuer.check_web_identity(iam_backends[ACCOUNT_ID]["global"], params)
            except identity.IdentityError as e:
                return refuse(e.code, e.message, e.status)
            try:
                chunks = self.moto_app(moto_environ, capture)
                raw = b"".join(chunks)
                if hasattr(chunks, "close"):
                    chunks.close()
            except Exception:  # noqa: BLE001 - an STS InternalError, as the service would answer
                log.error("moto raised on %s:\n%s", action, traceback.format_exc())
                return refuse("InternalError", "An internal error has occurred", 500)
        status = int(captured.get("status", "500").split()[0])
        if status >= 400:
            code_m = re.search(rb"<Code>([^<]*)</Code>", raw)
            msg_m = re.search(rb"<Message>([^<]*)</Message>", raw, re.S)
            code = code_m.group(1).decode() if code_m else "InternalError"
            return refuse(code, msg_m.group(1).decode() if msg_m else code, status)
        key_m = re.search(rb"<AccessKeyId>([^<]*)</AccessKeyId>", raw)
        entry["status"] = status
        entry["subject"] = claims.get("sub")
        entry["issued_access_key_id"] = key_m.group(1).decode() if key_m else None
        raw = raw.replace(b"<RequestId>request-id</RequestId>", f"<RequestId>{request_id}</RequestId>".encode(), 1)
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(raw)))])
        return [raw]

    def pod_identity(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """The EKS Pod Identity agent: keys of the role associated with the token's service account."""
        from moto.sts.models import sts_backends

        entry = self.log_call("AssumeRoleForPodIdentity", {}, None, "eks-auth")

        def answer(status: int, doc: dict[str, Any]) -> Any:
            entry["status"] = status
            if status != 200:
                entry["error"] = doc.get("Code")
            data = json.dumps(doc).encode()
            reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 405: "Method Not Allowed"}
            start_response(
                f"{status} {reason.get(status, 'Error')}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
            )
            return [data]

        if environ["REQUEST_METHOD"] != "GET":
            return answer(405, {"Code": "MethodNotAllowed", "Message": "the credentials endpoint takes GET only"})
        fault = self.apply_fault(environ, entry, "AssumeRoleForPodIdentity")
        if fault is not None:
            return answer(fault.status, {"Code": fault.code, "Message": fault.message})
        try:
            role_arn, claims = self.issuer.pod_identity_role(environ.get("HTTP_AUTHORIZATION", ""))
        except identity.IdentityError as e:
            return answer(e.status, {"Code": e.code, "Message": e.message})
        subject = str(claims.get("sub"))
        entry["params"] = {"subject": subject, "role_arn": role_arn}
        with self.lock:
            role = sts_backends[ACCOUNT_ID]["global"].assume_role(
                region_name=self.region,
                role_session_name=f"eks-{self.name}-{subject.rpartition(':')[2]}"[:64],
                role_arn=role_arn,
                policy=None,
                duration=identity.POD_IDENTITY_SECONDS,
                external_id=None,
            )
        entry["issued_access_key_id"] = role.access_key_id
        return answer(
            200,
            {
                "AccessKeyId": role.access_key_id,
                "SecretAccessKey": role.secret_access_key,
                "Token": role.session_token,
                "AccountId": ACCOUNT_ID,
                "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(role.expiration.timestamp())),
            },
        )

    def respond_error(
        self, start_response: Callable[..., Any], entry: dict[str, Any] | None, code: str, message: str, status: int
    ) -> Any:
        body = ec2_error_xml(code, message)
        if entry is not None:
            entry["status"] = status
            entry["error"] = code
            entry["seconds"] = time.time() - entry["time"]
        reason = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error"}.get(
            status, "Service Unavailable" if status == 503 else "Error"
        )
        start_response(
            f"{status} {reason}",
            [("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def pick_fault(self, action: str) -> Fault | None:
        with self.calls_lock:
            for f in self.faults:
                if f.action not in ("*", action):
                    continue
                if f.remaining is not None and f.remaining <= 0:
                    continue
                if f.probability < 1.0 and random.random() >= f.probability:
                    continue
                if f.remaining is not None:
                    f.remaining -= 1
                f.hits += 1
                return f
        return None

    # -- control API -----------------------------------------------------------------------------------------------

    def control(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.has_control_token(environ):
            return self.refuse_control(start_response)
        method = environ["REQUEST_METHOD"]
        path = environ["PATH_INFO"][len("/vpcsim") :].rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
            status, out = self.route(method, path, query, body)
        except (ValueError, KeyError) as e:
            status, out = 400, {"error": str(e).strip("'\"")}
        except ec2fidelity.EC2ClientError as e:
            status, out = 400, {"error": f"{e.code}: {e.message}"}
        except Exception as e:  # noqa: BLE001 - the caller sees the reason
            log.exception("control %s %s", method, path)
            status, out = 500, {"error": f"{type(e).__name__}: {e}"}
        data = json.dumps(out).encode()
        reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}.get(status, "Error")
        start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if path == "/state" and method == "GET":
            return 200, self.state()
        if path == "/nodes" and method == "GET":
            return 200, list(self.nodes.values())
        if path == "/nodes" and method == "POST":
            return 200, self.launch_node(body)
        if len(parts) == 2 and parts[0] == "nodes" and method == "DELETE":
            self.terminate_node(parts[1])
            return 200, {"terminated": parts[1]}
        if path == "/subnets" and method == "GET":
            return 200, self.subnets
        if path == "/subnets" and method == "POST":
            return 200, self.add_subnet(body)
        if path == "/faults" and method == "GET":
            return 200, [f.to_json() for f in self.faults]
        if path == "/faults" and method == "POST":
            specs = body if isinstance(body, list) else [body]
            made = []
            with self.calls_lock:
                for spec in specs:
                    self.fault_seq += 1
                    f = Fault(spec, self.fault_seq)
                    self.faults.append(f)
                    made.append(f.to_json())
            return 200, made if isinstance(body, list) else made[0]
        if path == "/faults" and method == "DELETE":
            with self.calls_lock:
                self.faults = []
            return 200, {"cleared": True}
        if len(parts) == 2 and parts[0] == "faults" and method == "DELETE":
            with self.calls_lock:
                self.faults = [f for f in self.faults if str(f.id) != parts[1]]
            return 200, {"deleted": parts[1]}
        if path == "/calls" and method == "GET":
            since = int(query.get("since", 0))
            action = query.get("action")
            with self.calls_lock:
                out = [c for c in self.calls if c["seq"] > since and (not action or c["action"] == action)]
            return 200, out
        if path == "/calls" and method == "DELETE":
            with self.calls_lock:
                self.calls = []
            return 200, {"cleared": True}
        if path == "/imds/lag" and method in ("POST", "PUT"):
            seconds = float(body.get("seconds", 0))
            if seconds < 0:
                raise ValueError("lag seconds must be >= 0")
            node = body.get("node")
            targets = [self.node_imds[node]] if node else list(self.node_imds.values())
            if not node:
                self.default_lag = seconds
            for t in targets:
                t.lag_seconds = seconds
            self.write_state()
            return 200, {"seconds": seconds, "nodes": [t.name for t in targets]}
        if path == "/ec2/detach-delay" and method in ("POST", "PUT"):
            seconds = float(body.get("seconds", 0))
            if seconds < 0:
                raise ValueError("detach delay seconds must be >= 0")
            ec2fidelity.SETTINGS["detach_delay"] = seconds
            self.write_state()
            return 200, {"seconds": seconds}
        if path == "/ec2/attach-delay" and method in ("POST", "PUT"):
            seconds = float(body.get("seconds", ec2fidelity.DEFAULT_ATTACH_DELAY))
            if seconds < 0:
                raise ValueError("attach delay seconds must be >= 0")
            ec2fidelity.SETTINGS["attach_delay"] = seconds
            self.write_state()
            return 200, {"seconds": seconds}
        if path == "/ec2/allocation" and method in ("POST", "PUT"):
            mode = body.get("mode", ec2fidelity.SETTINGS["allocation"])
            if mode not in ec2fidelity.ALLOCATIONS:
                raise ValueError(f"allocation mode must be one of {ec2fidelity.ALLOCATIONS}, got {mode!r}")
            with self.lock:
                ec2fidelity.SETTINGS["allocation"] = mode
                if body.get("seed") is not None:
                    ec2fidelity.ALLOCATOR.reseed(int(body["seed"]))
            self.write_state()
            return 200, self.ec2_settings()
        if path == "/ec2/settings" and method == "GET":
            return 200, self.ec2_settings()
        if path == "/network/drops" and method == "GET":
            return 200, self.net.drop_counts() if self.net is not None else {}
        if path == "/imds/faults" and method == "POST":
            node = body.get("node")
            if not (body.get("status") or body.get("latency_ms") or body.get("drop")):
                raise ValueError("an IMDS fault needs one of: status, latency_ms, drop")
            targets = [self.node_imds[node]] if node else list(self.node_imds.values())
            spec = {k: body.get(k) for k in ("path", "status", "latency_ms", "drop", "count")}
            for t in targets:
                with t.lock:
                    t.faults.append(dict(spec))
            return 200, dict(spec, nodes=[t.name for t in targets])
        if path == "/imds/faults" and method == "DELETE":
            for t in self.node_imds.values():
                with t.lock:
                    t.faults = []
            return 200, {"cleared": True}
        if path == "/imds/requests" and method == "GET":
            return 200, {name: n.requests for name, n in self.node_imds.items()}
        if path == "/identity/token" and method == "POST":
            seconds = int(body.get("seconds", identity.DEFAULT_TOKEN_SECONDS))
            token = self.issuer.mint(
                subject=body.get("subject") or identity.AWS_NODE_SUBJECT,
                audience=body.get("audience") or identity.STS_AUDIENCE,
                seconds=seconds,
                now=time.time() + float(body.get("issued_offset_seconds", 0)),
            )
            return 200, {"token": token}
        if path == "/sync" and method == "POST":
            self.sync()
            return 200, {"generation": self.sync_gen}
        if path == "/internet/peers" and method == "GET":
            return 200, self.net.peers() if self.net is not None else []
        if path == "/internet/peers" and method == "DELETE":
            if self.net is not None:
                self.net.clear_peers()
            return 200, {"cleared": True}
        if path == "/shutdown" and method == "POST":
            threading.Timer(0.05, self.stop_event.set).start()
            return 200, {"stopping": True}
        raise ValueError(
            f"unknown control endpoint {method} /vpcsim{path}; see tests/vpcsim/README section in the project README"
        )


def run_instances_kwargs(region: str, itype: str, subnet_id: str, tags: dict[str, str]) -> dict[str, Any]:
    """The keyword arguments moto's RunInstances handler passes to its backend, for one plain instance."""
    return {
        "instance_type": itype,
        "is_instance_type_default": False,
        "placement": None,
        "placement_hostid": None,
        "region_name": region,
        "subnet_id": subnet_id,
        "key_name": None,
        "security_group_ids": [],
        "nics": [],
        "private_ip": None,
        "associate_public_ip": None,
        "tags": {"instance": tags},
        "ebs_optimized": False,
        "disable_api_stop": False,
        "instance_market_options": {},
        "instance_initiated_shutdown_behavior": None,
        "launch_template": {},
        "hibernation_options": {},
        "iam_instance_profile_name": None,
        "iam_instance_profile_arn": None,
        "monitoring_state": "disabled",
        "ipv6_address_count": 0,
        "metadata_options": dict(NODE_METADATA_OPTIONS),
        "client_token": str(uuid.uuid4()),
    }


def serve(args: Any) -> int:
    """Foreground server (the `serve` command); exits on SIGTERM/SIGINT, /vpcsim/shutdown or a dead watched pid."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sim = Sim(
        args.name,
        args.state_dir,
        region=args.region,
        netns=not args.no_netns,
        watch_pid=args.watch_pid,
        port=args.port,
        policy=args.policy,
        seed=args.seed,
        allocation=args.allocation,
        attach_delay=args.attach_delay,
    )

    def on_signal(signum: int, frame: Any) -> None:
        sim.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sim.start(nodes=args.node or [])
        log.info("vpcsim %s ready on %s in %.2fs", sim.name, sim.endpoint, sim.startup_seconds)
        print(json.dumps({"ready": True, "state": sim.state_path}), flush=True)
        while not sim.stop_event.wait(0.1):
            pass
    except Exception:  # noqa: BLE001
        log.exception("vpcsim failed")
        sim.shutdown()
        return 1
    sim.shutdown()
    try:
        os.unlink(sim.state_path)
    except FileNotFoundError:
        pass
    log.info("vpcsim %s stopped", sim.name)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalisation (seconds of tearing down moto's state and idle threads): nothing is left to do.
    os._exit(0)
