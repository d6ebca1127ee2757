"""Workload identities of the VPC-in-a-box: IRSA (STS AssumeRoleWithWebIdentity) and EKS Pod Identity.

The sim plays the cluster's service-account token issuer: it mints JWTs (HS256 with a key of its own; a real cluster
signs RS256, the difference does not matter to a client, which never verifies the token) for a subject such as
`system:serviceaccount:kube-system:aws-node` and an audience (`sts.amazonaws.com` for IRSA, `pods.eks.amazonaws.com`
for Pod Identity). The issuer is registered in moto's IAM as an OpenID Connect provider, and the node role trusts it
for web identity, with the conditions `eksctl`/the EKS docs put on IRSA roles (audience and subject).

- STS: an unsigned `Action=AssumeRoleWithWebIdentity` (form POST or GET query) is checked the way STS checks it
  (token well formed, issuer a registered provider, signature, expiry, audience, the role's trust policy) and then
  answered by moto's own STS (its `TokenResponse`), whose temporary keys moto's EC2 accepts with the role's policy.
- Pod Identity agent: `GET /v1/credentials` with `Authorization: <token>` answers the agent's JSON, keys of the role
  associated with the token's service account (moto STS AssumeRole, as EKS Auth's AssumeRoleForPodIdentity does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

STS_AUDIENCE = "sts.amazonaws.com"
POD_IDENTITY_AUDIENCE = "pods.eks.amazonaws.com"
AWS_NODE_SUBJECT = "system:serviceaccount:kube-system:aws-node"
POD_IDENTITY_PATH = "/v1/credentials"
STS_VERSION = "2011-06-15"
STS_XMLNS = f"https://sts.amazonaws.com/doc/{STS_VERSION}/"
# Calls STS takes without a signature (the token or assertion is the proof).
UNSIGNED_STS_ACTIONS = ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML")
# What the sim passes on to moto's AssumeRoleWithWebIdentity (moto would not apply a session Policy: not passed).
WEB_IDENTITY_PARAMS = ("Action", "Version", "RoleArn", "RoleSessionName", "WebIdentityToken", "DurationSeconds")
# Service-account tokens of projected volumes live 24 h at most by default; the kubelet rotates them.
DEFAULT_TOKEN_SECONDS = 86400
POD_IDENTITY_SECONDS = 6 * 3600


class IdentityError(Exception):
    """A refusal in the service's own terms: error code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Issuer:
    """The cluster's service-account token issuer and the identities it backs."""

    def __init__(self, account_id: str, region: str, role_name: str):
        self.account_id = account_id
        self.region = region
        self.cluster_id = secrets.token_hex(16).upper()
        host = f"oidc.eks.{region}.amazonaws.com/id/{self.cluster_id}"
        self.issuer = "https://" + host
        self.provider_arn = f"arn:aws:iam::{account_id}:oidc-provider/{host}"
        self.role_name = role_name
        self.role_arn = f"arn:aws:iam::{account_id}:role/{role_name}"
        self.key = secrets.token_bytes(32)
        # Pod Identity associations: service account subject -> role ARN (EKS CreatePodIdentityAssociation).
        self.associations = {AWS_NODE_SUBJECT: self.role_arn}

    # -- IAM set-up ------------------------------------------------------------------------------------------------

    def trust_statements(self) -> list[dict[str, Any]]:
        """Trust policy statements for web identity (IRSA, aws-node's service account) and Pod Identity."""
        host = self.issuer[len("https://") :]
        return [
            {
                "Effect": "Allow",
                "Principal": {"Federated": self.provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{host}:aud": STS_AUDIENCE, f"{host}:sub": AWS_NODE_SUBJECT},
                },
            },
            {
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            },
        ]

    def register(self, iam: Any) -> None:
        """Registers the issuer as an OpenID Connect provider in moto's IAM."""
        iam.create_open_id_connect_provider(self.issuer, ["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"], [STS_AUDIENCE], [])

    # -- tokens ----------------------------------------------------------------------------------------------------

    def mint(self, subject: str = AWS_NODE_SUBJECT, audience: str = STS_AUDIENCE, seconds: int = DEFAULT_TOKEN_SECONDS,
             now: float | None = None) -> str:
        """A service-account token (JWT) as the kubelet would project it."""
        if not subject or not audience:
            raise ValueError("a token needs a subject (e.g. system:serviceaccount:kube-system:aws-node) and an audience")
        if seconds < 1:
            raise ValueError(f"token lifetime must be >= 1 second, got {seconds}")
        iat = int(now if now is not None else time.time())
        header = {"alg": "HS256", "typ": "JWT", "kid": self.cluster_id[:8].lower()}
        namespace, _, account = subject.rpartition(":")
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": [audience],
            "iat": iat,
            "nbf": iat,
            "exp": iat + seconds,
            "kubernetes.io": {
                "namespace": namespace.rpartition(":")[2],
                "serviceaccount": {"name": account, "uid": secrets.token_hex(8)},
            },
        }
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = hmac.new(self.key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64url(sig)

    def verify(self, token: str, audience: str, now: float | None = None) -> dict[str, Any]:
        """The token's claims, or IdentityError with STS's codes (the Pod Identity side maps them)."""
        now = now if now is not None else time.time()
        parts = token.strip().split(".")
        if len(parts) != 3:
            raise IdentityError("InvalidIdentityToken", "Couldn't parse the web identity token: not a JWT", 400)
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise IdentityError("InvalidIdentityToken", "Couldn't parse the web identity token", 400) from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise IdentityError("InvalidIdentityToken", "Couldn't parse the web identity token", 400)
        iss = claims.get("iss")
        if iss != self.issuer:
            raise IdentityError(
                "InvalidIdentityToken", f"No OpenIDConnect provider found in your account for {iss}", 400
            )
        expected = hmac.new(self.key, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(sig, expected):
            raise IdentityError("InvalidIdentityToken", "The web identity token's signature is not valid", 400)
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= now:
            raise IdentityError(
                "ExpiredTokenException",
                f"Token expired: current date/time {int(now)} must be before the expiration date/time {exp}",
                400,
            )
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if audience not in auds:
            raise IdentityError("InvalidIdentityToken", "Incorrect token audience", 400)
        return claims

    # -- STS AssumeRoleWithWebIdentity -----------------------------------------------------------------------------

    def check_web_identity(self, iam: Any, params: dict[str, str]) -> dict[str, Any]:
        """STS's checks before it hands out keys; returns the token's claims."""
        for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
            if not params.get(name):
                raise IdentityError("MissingParameter", f"The request must contain the parameter {name}", 400)
        claims = self.verify(params["WebIdentityToken"], STS_AUDIENCE)
        denied = IdentityError("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403)
        try:
            role = iam.get_role_by_arn(params["RoleArn"])
        except Exception:  # noqa: BLE001 - moto's NotFoundException; STS does not say whether the role exists
            raise denied from None
        if not self.trusts(role.assume_role_policy_document, claims):
            raise denied
        return claims

    def trusts(self, document: str, claims: dict[str, Any]) -> bool:
        """Whether a role's trust policy lets this provider's token assume it (StringEquals conditions only)."""
        try:
            policy = json.loads(document)
        except ValueError:
            return False
        statements = policy.get("Statement", [])
        host = self.issuer[len("https://") :]
        values = {f"{host}:sub": claims.get("sub"), f"{host}:aud": claims.get("aud")}
        for st in statements if isinstance(statements, list) else [statements]:
            actions = st.get("Action", [])
            actions = actions if isinstance(actions, list) else [actions]
            federated = (st.get("Principal") or {}).get("Federated")
            if st.get("Effect") != "Allow" or "sts:AssumeRoleWithWebIdentity" not in actions:
                continue
            if federated != self.provider_arn:
                continue
            ok = True
            for op, conds in (st.get("Condition") or {}).items():
                if op != "StringEquals":
                    ok = False
                    break
                for key, want in conds.items():
                    have = values.get(key)
                    haves = have if isinstance(have, list) else [have]
                    wants = want if isinstance(want, list) else [want]
                    if not any(h in wants for h in haves):
                        ok = False
            if ok:
                return True
        return False

    # -- Pod Identity ----------------------------------------------------------------------------------------------

    def pod_identity_role(self, token: str) -> tuple[str, dict[str, Any]]:
        """The role associated with the token's service account, or IdentityError with the agent's status."""
        if not token.strip():
            raise IdentityError("InvalidRequest", "Service account token cannot be empty", 400)
        try:
            claims = self.verify(token, POD_IDENTITY_AUDIENCE)
        except IdentityError as e:
            code = "ExpiredTokenException" if e.code == "ExpiredTokenException" else "InvalidTokenException"
            raise IdentityError(code, "The service account token is not valid: " + e.message, 401) from None
        role = self.associations.get(claims.get("sub", ""))
        if role is None:
            raise IdentityError(
                "AccessDeniedException",
                f"No Pod Identity association for service account {claims.get('sub')}",
                403,
            )
        return role, claims


def sts_error_xml(code: str, message: str, request_id: str) -> bytes:
    esc = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    kind = "Receiver" if code in ("InternalError", "ServiceUnavailable", "IDPCommunicationError") else "Sender"
    return (
        f'<ErrorResponse xmlns="{STS_XMLNS}"><Error><Type>{kind}</Type><Code>{code}</Code>'
        f"<Message>{esc}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def install() -> None:
    """moto's STS demands a signature on every call; STS takes AssumeRoleWithWebIdentity/SAML unsigned."""
    from moto.sts.responses import TokenResponse

    if getattr(TokenResponse, "_vpcsim_unsigned", False):
        return
    orig = TokenResponse._authenticate_and_authorize_normal_action

    def authorize(self: Any, resource: str = "*") -> None:
        unsigned = not self.headers.get("Authorization")
        if unsigned and self._get_action() in ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"):
            return
        orig(self, resource)

    TokenResponse._authenticate_and_authorize_normal_action = authorize
    TokenResponse._vpcsim_unsigned = True
