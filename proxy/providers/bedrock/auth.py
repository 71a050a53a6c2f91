"""AWS credentials and SigV4 signing for Bedrock, with botocore (the optional extra `[bedrock]`).

Credentials come from the provider config, else from the standard environment variables
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION).
A Bedrock API key (`api_key`, sent as `Authorization: Bearer`) replaces SigV4 when configured.
Problems are reported as errors at call (and probe) time, never at start-up, so one misconfigured
provider does not stop the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.core.errors import UNAVAILABLE, UpstreamError
from proxy.providers.bedrock.config import BedrockConfig

SERVICE = "bedrock"  # the signing name of bedrock-runtime (botocore service model `signingName`)
INSTALL_HINT = "install the optional extra: pip install 'llm-gateway[bedrock]'"


def provider_unavailable(message: str) -> UpstreamError:
    # 503 (not 500): the gateway is fine, this one provider cannot be used as configured
    return UpstreamError(503, message, kind="config", retryable=False, type=UNAVAILABLE,
                         code="provider_unavailable")


def resolve_region(cfg: BedrockConfig, env: Mapping[str, str]) -> str | None:
    return cfg.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


class Signer:
    """Signs one request; built once per provider, holds the credentials."""

    def __init__(self, cfg: BedrockConfig, env: Mapping[str, str]) -> None:
        self.region = resolve_region(cfg, env)
        self.bearer = cfg.api_key
        self.problem: str | None = None
        self._creds: Any = None
        self._auth_cls: Any = None
        self._request_cls: Any = None
        if self.bearer:
            return
        try:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest
            from botocore.credentials import Credentials
        except ImportError:
            self.problem = f"bedrock provider needs botocore for SigV4 signing: {INSTALL_HINT}"
            return
        if cfg.access_key_id:  # a session token belongs to the key pair it came with: take all from one place
            key_id, secret, token = cfg.access_key_id, cfg.secret_access_key, cfg.session_token
        else:
            key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
            token = env.get("AWS_SESSION_TOKEN")
        if not key_id or not secret:
            self.problem = ("bedrock provider has no AWS credentials: set access_key_id/secret_access_key "
                            "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
            return
        self._creds = Credentials(key_id, secret, token or None)
        self._auth_cls, self._request_cls = SigV4Auth, AWSRequest

    def check(self) -> None:
        if self.problem:
            raise provider_unavailable(self.problem)
        if not self.region:
            raise provider_unavailable("bedrock provider has no region: set `region` or AWS_REGION")

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """Headers with auth added; `url` must be exactly what goes on the wire (see translator)."""
        self.check()
        if self.bearer:
            return {**headers, "Authorization": f"Bearer {self.bearer}"}
        req = self._request_cls(method=method, url=url, data=body, headers=headers)
        self._auth_cls(self._creds, SERVICE, self.region).add_auth(req)
        return dict(req.headers.items())
