"""The settings every provider `type:` shares (each type's own model, `proxy/providers/<type>/config.py`, adds
its fields), the mock's behaviour, and a model's list price: what the provider folders build on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from proxy.core.strict import Strict
from proxy.core.units import Duration


class Timeouts(Strict):
    connect: Duration = 10.0
    first_token: Duration = 120.0  # headers + first byte of the body
    idle: Duration = 120.0  # between two stream chunks
    total: Duration = 600.0

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_total(cls, v: Any) -> Any:
        # `timeout: 30s` (or a number of seconds) is the total deadline, as other gateways write it
        if isinstance(v, str | int | float):
            return {"total": v}
        return v


class BreakerConfig(Strict):
    failure_threshold: int = Field(5, ge=1)
    reset_timeout: Duration = 30.0
    # sharing through Redis (read from the top-level `breaker:` only; needs `redis:`)
    shared: bool = True
    sync_interval: Duration = 0.5
    redis_prefix: str = "gateway:breaker:"


class MockBehaviour(Strict):
    """Deterministic replies and fault injection for the built-in mock provider and the mock upstream."""

    reply: Literal["echo", "lorem"] = "echo"
    reply_tokens: int = Field(20, ge=0, le=100_000)
    ttft: Duration = 0.0  # delay before the first byte / chunk
    tokens_per_s: float = Field(0.0, ge=0)  # 0 = as fast as possible
    latency: Duration = 0.0  # extra delay before a non-stream reply
    error_status: int | None = Field(None, ge=400, le=599)
    error_rate: float = Field(0.0, ge=0, le=1)
    cut_after: int | None = Field(None, ge=0)  # cut a stream after N chunks
    # fault injection for resilience tests: `fault` replaces the reply when a failure is due
    fault: Literal["drop", "hang", "malformed_json", "wrong_content_type", "content_filter"] | None = None
    context_window: int | None = Field(None, ge=1)  # longer prompts (in words) get context_length_exceeded
    fail_first: int | None = Field(None, ge=0)  # only the first N calls fail, then normal replies
    retry_after: float | None = Field(None, ge=0)  # Retry-After sent with injected 429 / 503
    trickle: Duration = 0.0  # pause between 16-byte pieces of a non-stream body (slow trickle)


class ProviderConfig(Strict):
    """The settings every provider `type:` has. Each type's own model (`proxy/providers/<type>/config.py`)
    adds its fields; `providers:` entries are validated by the model the provider registry names for their
    `type:` (ProviderTypes), so a field of another type is an error naming it."""

    type: str
    enabled: bool = True
    base_url: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Timeouts = Field(default_factory=Timeouts)
    max_connections: int = Field(4096, ge=1)
    breaker: BreakerConfig | None = None

    # filled by the loader, not by users
    disabled_reason: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _strip_base_url(self) -> ProviderConfig:
        if self.base_url is not None:
            self.base_url = self.base_url.rstrip("/")
        return self


class Price(Strict):
    input: float = Field(ge=0)  # USD per million prompt tokens
    output: float = Field(ge=0)  # USD per million completion tokens
    cached_input: float | None = Field(None, ge=0)  # prompt-cache reads; default: the input price
    cache_write: float | None = Field(None, ge=0)  # prompt-cache writes (Anthropic, Bedrock); default: input
