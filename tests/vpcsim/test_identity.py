"""Workload identities: STS AssumeRoleWithWebIdentity (IRSA) and the EKS Pod Identity agent, with keys EC2 accepts."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from .conftest import ec2_client


def http_status(req: urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def web_identity_form(sim: Any, token: str, **extra: str) -> dict[str, str]:
    return dict(
        {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": "2011-06-15",
            "RoleArn": sim.state["role_arn"],
            "RoleSessionName": "aws-node-test",
            "WebIdentityToken": token,
        },
        **extra,
    )


def sts_post(sim: Any, form: dict[str, str]) -> tuple[int, str]:
    data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(
        sim.state["sts_endpoint"] + "/",
        data=data,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    return http_status(req)


def sts_code(body: str) -> str | None:
    m = re.search(r"<Code>([^<]*)</Code>", body)
    return m.group(1) if m else None


def xml_field(body: str, name: str) -> str:
    m = re.search(rf"<{name}>([^<]*)</{name}>", body)
    assert m, f"no <{name}> in {body[:400]}"
    return m.group(1)


def pod_identity_get(sim: Any, token: str | None) -> tuple[int, Any]:
    headers = {} if token is None else {"Authorization": token}
    status, body = http_status(urllib.request.Request(sim.state["pod_identity_endpoint"], headers=headers))
    return status, json.loads(body)


def test_state_names_the_identity_endpoints(sim):
    st = sim.state
    assert st["sts_endpoint"] == st["endpoint"]
    assert st["pod_identity_endpoint"] == st["endpoint"] + "/v1/credentials"
    assert st["role_arn"] == f"arn:aws:iam::{st['account_id']}:role/{st['iam_role']}"
    wi = st["web_identity"]
    assert wi["issuer"].startswith(f"https://oidc.eks.{st['region']}.amazonaws.com/id/")
    assert wi["provider_arn"].endswith(wi["issuer"][len("https://"):])
    assert st["pod_identity"]["associations"] == {wi["subject"]: st["role_arn"]}


def test_minted_token_is_a_service_account_jwt(sim):
    token = sim.service_account_token()
    header, claims, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    body = json.loads(base64.urlsafe_b64decode(pad(claims)))
    assert body["iss"] == sim.state["web_identity"]["issuer"]
    assert body["sub"] == "system:serviceaccount:kube-system:aws-node"
    assert body["aud"] == ["sts.amazonaws.com"]
    assert body["kubernetes.io"]["namespace"] == "kube-system"
    assert 86000 < body["exp"] - time.time() <= 86400
    assert sig


def test_boto3_web_identity_keys_sign_ec2_with_the_seed_policy(sim, nodes):
    node = nodes("m5.large")
    token = sim.service_account_token()
    sts = boto3.client(
        "sts", region_name=sim.state["region"], endpoint_url=sim.state["sts_endpoint"],
        config=botocore.config.Config(signature_version=botocore.UNSIGNED),
    )
    out = sts.assume_role_with_web_identity(
        RoleArn=sim.state["role_arn"], RoleSessionName="aws-node-boto3", WebIdentityToken=token
    )
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert out["AssumedRoleUser"]["Arn"].endswith(":assumed-role/vpc-cni-node-role/aws-node-boto3")
    ec2 = ec2_client(sim.state, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    got = ec2.describe_instances(InstanceIds=[node["instance_id"]])
    assert got["Reservations"][0]["Instances"][0]["InstanceId"] == node["instance_id"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_subnets()
    assert e.value.response["Error"]["Code"] == "UnauthorizedOperation"
    assert "ec2:DescribeSubnets" in e.value.response["Error"]["Message"]
    # The call log ties the EC2 calls to the key STS issued; the token itself is never logged.
    sts_calls = sim.calls("AssumeRoleWithWebIdentity")
    mine = [c for c in sts_calls if c["params"].get("RoleSessionName") == "aws-node-boto3"]
    assert mine and mine[-1]["issued_access_key_id"] == creds["AccessKeyId"] and mine[-1]["service"] == "sts"
    assert token not in json.dumps(sts_calls)
    described = [c for c in sim.calls("DescribeInstances") if c["access_key_id"] == creds["AccessKeyId"]]
    assert [c["status"] for c in described] == [200]


def test_web_identity_by_get_query_and_post_form_agree(sim):
    token = sim.service_account_token()
    status, body = sts_post(sim, web_identity_form(sim, token))
    assert status == 200, body
    assert "<AssumeRoleWithWebIdentityResponse" in body and xml_field(body, "SessionToken")
    query = urllib.parse.urlencode(web_identity_form(sim, token, RoleSessionName="via-get"))
    status, body = http_status(urllib.request.Request(sim.state["sts_endpoint"] + "/?" + query))
    assert status == 200, body
    assert xml_field(body, "AccessKeyId").startswith("ASIA")
    assert xml_field(body, "Expiration").endswith("Z")


@pytest.mark.parametrize(
    "case,code,status",
    [
        ("not-a-jwt", "InvalidIdentityToken", 400),
        ("forged-signature", "InvalidIdentityToken", 400),
        ("expired", "ExpiredTokenException", 400),
        ("pod-identity-audience", "InvalidIdentityToken", 400),
        ("other-service-account", "AccessDenied", 403),
        ("unknown-role", "AccessDenied", 403),
        ("no-session-name", "MissingParameter", 400),
        ("wrong-version", "InvalidAction", 400),
    ],
)
def test_web_identity_refusals_are_sts_errors(sim, case, code, status):
    token = sim.service_account_token()
    form = web_identity_form(sim, token)
    if case == "not-a-jwt":
        form["WebIdentityToken"] = "just-some-opaque-string"
    elif case == "forged-signature":
        head, claims, _ = token.split(".")
        form["WebIdentityToken"] = f"{head}.{claims}.{'A' * 43}"
    elif case == "expired":
        form["WebIdentityToken"] = sim.service_account_token(seconds=60, issued_offset_seconds=-120)
    elif case == "pod-identity-audience":
        form["WebIdentityToken"] = sim.service_account_token(audience="pods.eks.amazonaws.com")
    elif case == "other-service-account":
        form["WebIdentityToken"] = sim.service_account_token(subject="system:serviceaccount:default:app")
    elif case == "unknown-role":
        form["RoleArn"] = sim.state["role_arn"] + "-missing"
    elif case == "no-session-name":
        del form["RoleSessionName"]
    elif case == "wrong-version":
        form["Version"] = "2016-11-15"
    got_status, body = sts_post(sim, form)
    assert (got_status, sts_code(body)) == (status, code), body
    assert "<ErrorResponse" in body
    assert form["WebIdentityToken"] not in body


def test_unsigned_ec2_is_still_refused(sim):
    """Only STS's unsigned calls skip the signature; EC2 keeps answering MissingAuthenticationToken."""
    req = urllib.request.Request(
        sim.state["endpoint"] + "/", data=b"Action=DescribeInstances&Version=2016-11-15", method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    status, body = http_status(req)
    assert (status, sts_code(body)) == (401, "MissingAuthenticationToken")


def test_sts_faults_apply_to_web_identity(sim):
    sim.add_fault("AssumeRoleWithWebIdentity", code="Throttling", status=400, count=1)
    try:
        token = sim.service_account_token()
        status, body = sts_post(sim, web_identity_form(sim, token))
        assert (status, sts_code(body)) == (400, "Throttling")
        status, body = sts_post(sim, web_identity_form(sim, token))
        assert status == 200, body
    finally:
        sim.clear_faults()


def test_pod_identity_agent_hands_out_role_keys_ec2_accepts(sim, nodes):
    node = nodes("m5.large")
    token = sim.service_account_token(audience="pods.eks.amazonaws.com")
    status, doc = pod_identity_get(sim, token)
    assert status == 200, doc
    assert set(doc) == {"AccessKeyId", "SecretAccessKey", "Token", "AccountId", "Expiration"}
    assert doc["AccountId"] == sim.state["account_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["Expiration"])
    ec2 = ec2_client(sim.state, doc["AccessKeyId"], doc["SecretAccessKey"], doc["Token"])
    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=[node["primary_eni"]])
    assert enis["NetworkInterfaces"][0]["NetworkInterfaceId"] == node["primary_eni"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_security_groups()
    assert "ec2:DescribeSecurityGroups" in e.value.response["Error"]["Message"]
    log = [c for c in sim.calls("AssumeRoleForPodIdentity") if c.get("issued_access_key_id") == doc["AccessKeyId"]]
    assert len(log) == 1 and log[0]["params"]["subject"] == "system:serviceaccount:kube-system:aws-node"
    assert token not in json.dumps(sim.calls())


@pytest.mark.parametrize(
    "case,status,code",
    [
        ("missing", 400, "InvalidRequest"),
        ("garbage", 401, "InvalidTokenException"),
        ("sts-audience", 401, "InvalidTokenException"),
        ("expired", 401, "ExpiredTokenException"),
        ("no-association", 403, "AccessDeniedException"),
    ],
)
def test_pod_identity_agent_refusals(sim, case, status, code):
    token: str | None = {
        "missing": None,
        "garbage": "not-a-token",
        "sts-audience": sim.service_account_token(),
        "expired": sim.service_account_token(audience="pods.eks.amazonaws.com", seconds=30, issued_offset_seconds=-60),
        "no-association": sim.service_account_token(
            audience="pods.eks.amazonaws.com", subject="system:serviceaccount:default:app"
        ),
    }[case]
    got, doc = pod_identity_get(sim, token)
    assert (got, doc.get("Code")) == (status, code), doc
    assert "AccessKeyId" not in doc
    if token:
        assert token not in json.dumps(doc)


def test_cli_prints_a_token_the_agent_accepts(sim):
    import subprocess
    import sys

    from .client import PACKAGE_ROOT, SimError

    out = subprocess.run(
        [sys.executable, "-m", "tests.vpcsim", "sa-token", "--name", sim.state["name"], "--state-dir",
         sim.state_dir, "--audience", "pods.eks.amazonaws.com"],
        cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    status, doc = pod_identity_get(sim, out.stdout.strip())
    assert status == 200 and doc["AccessKeyId"].startswith("ASIA"), doc
    with pytest.raises(SimError) as e:
        sim.service_account_token(seconds=0)
    assert "lifetime must be >= 1 second" in str(e.value)
