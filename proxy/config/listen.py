"""Where and how the gateway listens: address, body and input limits, trusted proxies, per-IP limits."""

from __future__ import annotations

import ipaddress

from pydantic import Field, PrivateAttr, field_validator, model_validator

from proxy.config.base import IPNetwork
from proxy.core.strict import Strict
from proxy.core.units import ByteSize, Duration


# ---------------------------------------------------------------- infrastructure
class InputLimits(Strict):
    """Bounds on hostile input, checked before anything else reads the body (openai_api.py)."""

    max_json_depth: int = Field(64, ge=2, le=1000)  # orjson itself stops at 1024
    max_messages: int = Field(2048, ge=1, le=1_000_000)
    max_string_bytes: ByteSize = 8 * 1024 * 1024  # one JSON string (a base64 image is one)
    max_tools: int = Field(128, ge=0, le=100_000)  # OpenAI's own maximum
    max_header_bytes: ByteSize = 8190  # one header line or the request line (aiohttp's parser): 431 above it

    @field_validator("max_string_bytes", "max_header_bytes")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 256:
            raise ValueError("must be at least 256 bytes")
        return v


class Listen(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: ByteSize = 10 * 1024 * 1024
    shutdown_timeout: Duration = 30.0
    # load balancers whose X-Forwarded-For / Forwarded name the client (clientip.py); empty = the peer is it
    trusted_proxies: list[str] = Field(default_factory=list)
    limits: InputLimits = Field(default_factory=InputLimits)
    _networks: tuple[IPNetwork, ...] = PrivateAttr(default=())

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        out = []
        for i, text in enumerate(v):
            try:  # host bits allowed (10.1.2.3/8 means 10.0.0.0/8); a bare address is a /32 or /128
                out.append(str(ipaddress.ip_network(text.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"item {i}: {text!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)") from None
        return out

    @model_validator(mode="after")
    def _parse_networks(self) -> Listen:
        self._networks = tuple(ipaddress.ip_network(c) for c in self.trusted_proxies)  # parsed once, here
        return self

    @property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        return self._networks


class IpLimits(Strict):
    rpm: int | None = Field(None, ge=1)
    # wrong keys from one client IP per minute before it gets 429 everywhere; 0 turns the throttle off
    failed_auth_per_minute: int = Field(20, ge=0, le=1_000_000)
