"""Fixtures: one sim per test session (namespaces on), nodes per test, boto3 clients signed with the node user's keys."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import pytest

from . import client as simclient

_counter = itertools.count(1)


def unique_name(tag: str = "") -> str:
    return f"vs{os.getpid()}{tag}{next(_counter)}"


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    state_dir = str(tmp_path_factory.mktemp("vpcsim-state"))
    name = unique_name("s")
    st = simclient.start(name, state_dir, watch_pid=os.getpid())
    c = simclient.Client(st)
    c.state_dir = state_dir  # type: ignore[attr-defined]
    try:
        yield c
    finally:
        simclient.stop(name, state_dir)


def ec2_client(st: dict[str, Any], key: str | None = None, secret: str | None = None, token: str | None = None,
               retries: int = 0) -> Any:
    return boto3.client(
        "ec2",
        region_name=st["region"],
        endpoint_url=st["endpoint"],
        aws_access_key_id=key or st["access_key_id"],
        aws_secret_access_key=secret or st["secret_access_key"],
        aws_session_token=token,
        config=botocore.config.Config(retries={"total_max_attempts": retries + 1, "mode": "standard"}, read_timeout=30),
    )


@pytest.fixture()
def ec2(sim: Any) -> Any:
    """EC2 client with the node user's keys (SigV4 checked, policy of seed 001), no retries."""
    return ec2_client(sim.state)


@pytest.fixture()
def ec2x(sim: Any) -> Any:
    """EC2 client of the `extended` user (seed 001 plus DescribeSubnets and the IPv6 calls)."""
    c = sim.state["credentials"]["extended"]
    return ec2_client(sim.state, key=c["access_key_id"], secret=c["secret_access_key"])


@pytest.fixture()
def nodes(sim: Any) -> Any:
    """Launch nodes for one test; they are terminated (namespaces removed) afterwards, also on failure."""
    made: list[dict[str, Any]] = []

    def launch(instance_type: str = "m5.large", subnet: str | None = None) -> dict[str, Any]:
        n = sim.launch_node(instance_type, subnet)
        made.append(n)
        return n

    try:
        yield launch
    finally:
        for n in made:
            try:
                sim.terminate_node(n["name"])
            except simclient.SimError:
                pass


@pytest.fixture()
def subnet(sim: Any) -> Callable[..., dict[str, Any]]:
    """A fresh subnet of the given CIDR (inside 10.0.0.0/16) in AZ a."""

    def make(cidr: str, ipv6: bool = True) -> dict[str, Any]:
        return sim.add_subnet(cidr, None, ipv6, None)

    return make


def raw_call(st: dict[str, Any], action: str, params: dict[str, str], key: str | None = None,
             secret: str | None = None) -> tuple[int, str]:
    """One SigV4-signed EC2 query call, returning the raw HTTP status and body."""
    body = dict(params, Action=action, Version="2016-11-15")
    req = botocore.awsrequest.AWSRequest(
        method="POST",
        url=st["endpoint"] + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    creds = botocore.credentials.Credentials(key or st["access_key_id"], secret or st["secret_access_key"])
    botocore.auth.SigV4Auth(creds, "ec2", st["region"]).add_auth(req)
    prepared = req.prepare()
    data = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    r = urllib.request.Request(prepared.url, data=data, method="POST", headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Imds:
    """IMDSv2 client for one endpoint."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.token = self.new_token(300)

    def new_token(self, ttl: int | str | None) -> str:
        headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}
        req = urllib.request.Request(self.endpoint + "/latest/api/token", method="PUT", headers=headers)
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()

    def status(self, path: str, token: str | None = "default") -> tuple[int, str]:
        headers = {}
        tok = self.token if token == "default" else token
        if tok is not None:
            headers["X-aws-ec2-metadata-token"] = tok
        req = urllib.request.Request(self.endpoint + "/latest/" + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def get(self, path: str) -> str:
        code, body = self.status(path)
        assert code == 200, f"IMDS GET {path}: {code}"
        return body

    def lines(self, path: str) -> list[str]:
        return self.get(path).split("\n")


def wait_until(fn: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last {last!r}")


def links(ns: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def routes(ns: str, family: str = "-4") -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-n", ns, family, "-j", "route", "show"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def netns_run(ns: str, *argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout)
