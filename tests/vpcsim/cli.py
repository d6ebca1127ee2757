"""Command line: python -m tests.vpcsim <command> (run from the repository root)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import client


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.vpcsim", description="VPC-in-a-box: EC2 + IMDS + namespaces")
    sub = p.add_subparsers(dest="cmd", required=True)

    def named(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--name", required=True, help="sim name; also the namespace prefix (<name>-vpc, <name>-n1)")
        sp.add_argument("--state-dir", default=client.DEFAULT_STATE_DIR, help="where <name>.json and <name>.log live")

    sp = sub.add_parser("start", help="start a sim in the background; prints its state JSON when ready")
    named(sp)
    sp.add_argument("--region", default="us-west-2")
    sp.add_argument("--no-netns", action="store_true", help="EC2 and loopback IMDS only: no namespaces")
    sp.add_argument("--node", action="append", metavar="TYPE", help="launch a node of this type at start (repeat)")
    sp.add_argument("--watch-pid", type=int, help="stop the sim by itself when this process exits")
    sp.add_argument("--timeout", type=float, default=60.0)
    sp.add_argument("--policy", choices=["seed001", "extended"], default="seed001",
                    help="IAM policy of the keys in env and IMDS: seed 001's, or plus IPv6/DescribeSubnets")
    ec2_knobs(sp)

    sp = sub.add_parser("serve", help="run a sim in the foreground (what start spawns)")
    named(sp)
    sp.add_argument("--region", default="us-west-2")
    sp.add_argument("--no-netns", action="store_true")
    sp.add_argument("--node", action="append", metavar="TYPE")
    sp.add_argument("--watch-pid", type=int)
    sp.add_argument("--port", type=int, default=0, help="EC2/control port on 127.0.0.1 (0: any free port)")
    sp.add_argument("--policy", choices=["seed001", "extended"], default="seed001")
    ec2_knobs(sp)

    sp = sub.add_parser("stop", help="stop a sim and remove its namespaces (works even if the server died)")
    named(sp)

    sp = sub.add_parser("cleanup", help="delete leftover namespaces named <prefix>-*")
    sp.add_argument("--prefix", required=True)

    sp = sub.add_parser("status", help="print the state of a running sim")
    named(sp)

    sp = sub.add_parser("env", help="print `export K=V` lines for a client (optionally for one node's IMDS)")
    named(sp)
    sp.add_argument("--node")

    sp = sub.add_parser("launch-node", help="RunInstances + node namespace; prints the node JSON")
    named(sp)
    sp.add_argument("--type", default="m5.large")
    sp.add_argument("--subnet", help="subnet id, name (a, b, v4only) or CIDR")
    sp.add_argument("--node-name")

    sp = sub.add_parser("terminate-node", help="TerminateInstances + remove the node namespace")
    named(sp)
    sp.add_argument("node")

    sp = sub.add_parser("add-subnet", help="CreateSubnet in the sim's VPC")
    named(sp)
    sp.add_argument("--cidr", required=True)
    sp.add_argument("--az")
    sp.add_argument("--no-ipv6", action="store_true")
    sp.add_argument("--subnet-name")

    sp = sub.add_parser("fault", help="inject a fault for an EC2 action ('*' for all)")
    named(sp)
    sp.add_argument("--action", default="*")
    sp.add_argument("--code", help="EC2 error code, e.g. RequestLimitExceeded")
    sp.add_argument("--status", type=int, help="HTTP status (default from the code: 503, 500, 400...)")
    sp.add_argument("--message")
    sp.add_argument("--latency-ms", type=float)
    sp.add_argument("--drop", action="store_true", help="close the connection without an answer (action not run)")
    sp.add_argument("--lose-answer", action="store_true",
                    help="run the action, then close the connection without its answer")
    sp.add_argument("--count", type=int, help="only the next N matching calls")
    sp.add_argument("--probability", type=float, help="fraction of matching calls (0..1)")

    sp = sub.add_parser("faults", help="list faults, or --clear them")
    named(sp)
    sp.add_argument("--clear", action="store_true")

    sp = sub.add_parser("calls", help="print the EC2 call log (JSON)")
    named(sp)
    sp.add_argument("--action")
    sp.add_argument("--since", type=int, default=0)
    sp.add_argument("--count", action="store_true", help="print only the number of calls")

    sp = sub.add_parser("imds-lag", help="IMDS shows EC2 changes only after this many seconds")
    named(sp)
    sp.add_argument("seconds", type=float)
    sp.add_argument("--node")

    sp = sub.add_parser("imds-fault", help="make a node's IMDS answer an HTTP status, slowly, or not at all")
    named(sp)
    sp.add_argument("--node", help="one node (default: all)")
    sp.add_argument("--path", default="", help="prefix below /latest/, e.g. meta-data/network/")
    sp.add_argument("--status", type=int)
    sp.add_argument("--latency-ms", type=float)
    sp.add_argument("--drop", action="store_true")
    sp.add_argument("--count", type=int)
    sp.add_argument("--clear", action="store_true", help="remove all IMDS faults")

    sp = sub.add_parser("detach-delay", help="ENIs stay 'detaching' (still attached) this long after Detach")
    named(sp)
    sp.add_argument("seconds", type=float)

    sp = sub.add_parser("attach-delay", help="attached ENIs stay 'attaching' (invisible to the node) this long")
    named(sp)
    sp.add_argument("seconds", type=float)

    sp = sub.add_parser("allocation", help="how EC2 picks addresses and prefixes: scattered (seeded) or lowest")
    named(sp)
    sp.add_argument("mode", choices=["scattered", "lowest"])
    sp.add_argument("--seed", type=int)

    sp = sub.add_parser("drops", help="packets dropped by the source/destination check and the internet gateway")
    named(sp)

    sp = sub.add_parser("peers", help="source addresses seen by the internet namespace's echo listener")
    named(sp)
    sp.add_argument("--clear", action="store_true")

    sp = sub.add_parser("sa-token", help="print a service-account token (JWT) from the sim's OIDC issuer")
    named(sp)
    sp.add_argument("--audience", default="sts.amazonaws.com",
                    help="sts.amazonaws.com (IRSA, the default) or pods.eks.amazonaws.com (Pod Identity)")
    sp.add_argument("--subject", default=None, help="default system:serviceaccount:kube-system:aws-node")
    sp.add_argument("--seconds", type=int, default=None, help="lifetime (default 86400)")

    a = p.parse_args(argv)
    try:
        return run(a)
    except client.SimError as e:
        print(f"vpcsim: {e}", file=sys.stderr)
        return 1


def ec2_knobs(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--seed", type=int, help="seed of scattered address allocation (default: random, in the state)")
    sp.add_argument("--allocation", choices=["scattered", "lowest"], default="scattered",
                    help="EC2 hands out addresses and /28s scattered over the subnet (real), or lowest free first")
    sp.add_argument("--attach-delay", type=float, default=1.0,
                    help="seconds an attached ENI stays 'attaching' before the node sees it (default 1)")


def out(obj: Any) -> None:
    print(json.dumps(obj, indent=1))


def run(a: argparse.Namespace) -> int:
    if a.cmd == "serve":
        from . import server

        return server.serve(a)
    if a.cmd == "start":
        out(client.start(a.name, a.state_dir, a.region, not a.no_netns, a.node, a.watch_pid, a.timeout, a.policy,
                         seed=a.seed, allocation=a.allocation, attach_delay=a.attach_delay))
        return 0
    if a.cmd == "stop":
        client.stop(a.name, a.state_dir)
        return 0
    if a.cmd == "cleanup":
        out({"removed": client.cleanup(a.prefix)})
        return 0
    c = client.Client.named(a.name, a.state_dir)
    if a.cmd == "status":
        out(c.refresh())
    elif a.cmd == "env":
        st = c.refresh()
        env = dict(st["env"])
        if a.node:
            env = next(n["env"] for n in st["nodes"] if n["name"] == a.node)
        for k, v in env.items():
            print(f"export {k}={v}")
    elif a.cmd == "launch-node":
        out(c.launch_node(a.type, a.subnet, a.node_name))
    elif a.cmd == "terminate-node":
        out(c.terminate_node(a.node))
    elif a.cmd == "add-subnet":
        out(c.add_subnet(a.cidr, a.az, not a.no_ipv6, a.subnet_name))
    elif a.cmd == "fault":
        kw = {
            k: v
            for k, v in {
                "code": a.code,
                "status": a.status,
                "message": a.message,
                "latency_ms": a.latency_ms,
                "drop": a.drop or None,
                "lose_answer": a.lose_answer or None,
                "count": a.count,
                "probability": a.probability,
            }.items()
            if v is not None
        }
        out(c.add_fault(a.action, **kw))
    elif a.cmd == "faults":
        out(c.clear_faults() if a.clear else c.faults())
    elif a.cmd == "calls":
        calls = c.calls(a.action, a.since)
        if a.count:
            print(len(calls))
        else:
            out(calls)
    elif a.cmd == "imds-lag":
        out(c.set_imds_lag(a.seconds, a.node))
    elif a.cmd == "imds-fault":
        if a.clear:
            out(c.clear_imds_faults())
        else:
            kw = {k: v for k, v in {"status": a.status, "latency_ms": a.latency_ms, "drop": a.drop or None,
                                     "count": a.count}.items() if v is not None}
            out(c.add_imds_fault(a.node, a.path, **kw))
    elif a.cmd == "detach-delay":
        out(c.set_detach_delay(a.seconds))
    elif a.cmd == "attach-delay":
        out(c.set_attach_delay(a.seconds))
    elif a.cmd == "allocation":
        out(c.set_allocation(a.mode, a.seed))
    elif a.cmd == "drops":
        out(c.drops())
    elif a.cmd == "sa-token":
        print(c.service_account_token(a.audience, a.subject, a.seconds))
    elif a.cmd == "peers":
        out(c.clear_internet_peers() if a.clear else c.internet_peers())
    return 0
