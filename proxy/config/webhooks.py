"""The `webhooks:` section of gateway.yaml, and what a subscription may ask for (event types, filter).

Kept apart from proxy/config.py (which embeds `WebhooksConfig`) so the admin API validates subscriptions
with the same rules; this module imports nothing of the gateway but infra helpers.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from proxy.core.units import Duration

EVENT_TYPES = (
    "invocation.completed", "invocation.failed", "budget.threshold", "budget.exceeded", "key.created",
    "key.rotated", "key.revoked", "breaker.opened", "breaker.closed", "webhook.test",
)
INVOCATION_EVENTS = frozenset({"invocation.completed", "invocation.failed"})
SECRET_PREFIX = "whsec_"
# the Standard Webhooks spec: a secret is 24 to 64 random bytes
SECRET_MIN_BYTES, SECRET_MAX_BYTES = 24, 64
DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host; no credentials in it (they would leak into logs and the API)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as err:
        raise ValueError(f"not a valid URL: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; the receiver verifies the signature instead")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    return url


def check_events(events: list[str]) -> list[str]:
    if not events:
        raise ValueError(f"give at least one event type: {', '.join(EVENT_TYPES)}")
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s) {', '.join(map(repr, unknown))}; known: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(events))  # de-duplicated, order kept


def check_secret(secret: str) -> str:
    """`whsec_` + base64 of 24..64 bytes, as the Standard Webhooks spec defines the secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r} (Standard Webhooks format)")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX!r} followed by base64") from None
    if not SECRET_MIN_BYTES <= len(raw) <= SECRET_MAX_BYTES:
        raise ValueError(f"must decode to {SECRET_MIN_BYTES}..{SECRET_MAX_BYTES} bytes, not {len(raw)}")
    return secret


class Filter(_Strict):
    """Only events about these keys (id or name) / teams; events about no key or team (breakers) pass."""

    keys: list[str] = Field(default_factory=list, max_length=1000)
    teams: list[str] = Field(default_factory=list, max_length=1000)


class SubscriptionFields(_Strict):
    url: str = Field(max_length=2048)
    events: list[str] = Field(max_length=len(EVENT_TYPES))
    active: bool = True
    description: str | None = Field(None, max_length=1000)
    filter: Filter | None = None

    _url = field_validator("url")(check_url)
    _events = field_validator("events")(check_events)


class SubscriptionConfig(SubscriptionFields):
    """A subscription declared in gateway.yaml: read-only through the admin API (id `cfg:<name>`)."""

    name: str | None = Field(None, min_length=1, max_length=100)
    secret: str | None = None

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str | None) -> str:
        if not v:
            raise ValueError("required: `secret: ${VAR}` holding a whsec_... secret (an unset variable is empty)")
        return check_secret(v)


class WebhooksConfig(_Strict):
    subscriptions: list[SubscriptionConfig] = Field(default_factory=list)
    # share of invocation.* events produced (only when a subscription asks for them)
    invocation_sample_rate: float = Field(1.0, ge=0, le=1)
    # a subscription failing every attempt for this long is disabled (with an audit entry)
    disable_after: Duration = 5 * 86400.0
    # loopback, link-local and private targets are refused unless this is true (tests, on-prem receivers)
    allow_private_targets: bool = False
    timeout: Duration = 10.0
    # delays between attempts after the first; one attempt per entry, then the delivery has failed
    retry_schedule: list[Duration] = Field(default_factory=lambda: list(DEFAULT_SCHEDULE), max_length=50)
    max_concurrency: int = Field(32, ge=1, le=1024)
    max_concurrency_per_subscription: int = Field(8, ge=1, le=256)
    queue_max: int = Field(10_000, ge=1, le=10_000_000)  # events waiting for their durable insert
    poll_interval: Duration = 1.0  # how often the dispatcher looks for due deliveries
    refresh_interval: Duration = 5.0  # how often subscriptions changed by other replicas are re-read
    rotation_grace: Duration = 86400.0  # the old secret keeps signing alongside the new one this long

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, v: Any) -> Any:
        # `webhooks: [{url, events, secret}, ...]` is the short form of `webhooks: {subscriptions: [...]}`
        return {"subscriptions": v} if isinstance(v, list) else v

    @model_validator(mode="after")
    def _names(self) -> WebhooksConfig:
        ids = [subscription_config_id(i, s) for i, s in enumerate(self.subscriptions)]
        if len(ids) != len(set(ids)):
            raise ValueError("subscriptions: names must be unique")
        for i, s in enumerate(self.subscriptions):
            if s.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", s.name):
                raise ValueError(f"subscriptions.{i}.name: letters, digits, '_', '.' and '-' only")
        if self.poll_interval <= 0 or self.refresh_interval <= 0:
            raise ValueError("poll_interval and refresh_interval must be above 0")
        return self


def subscription_config_id(index: int, s: SubscriptionConfig) -> str:
    return f"cfg:{s.name or index}"
