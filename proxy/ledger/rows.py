"""One usage-ledger row per finished call, built by metering and written in batches by `LedgerWriter`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, kw_only=True)
class UsageRow:
    request_id: str
    key_id: str | None = None
    key_name: str | None = None
    user: str | None = None
    team: str | None = None
    alias: str = ""
    provider: str = ""
    upstream_model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    saved_usd: float = 0.0  # what a cache hit would have cost upstream
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error_type: str | None = None
    cache_hit: bool = False
    stream: bool = False
    fallback: str | None = None  # the alias we fell back from, when a fallback served the call
    attempts: int = 1
    client_ip: str | None = None
    agent: str | None = None  # the agent the call went through (model `agent/<name>`), and its version
    agent_version: int | None = None
    chain_id: str | None = None  # the chain this call was a step of
    prompt_tokens_original: int | None = None  # prompt optimisation: estimated tokens before and after
    prompt_tokens_sent: int | None = None
    prompt_saved_usd: float | None = None
    created_at: datetime = field(default_factory=utcnow)  # last: the SQLite fast path relies on it

    def as_dict(self) -> dict[str, Any]:
        # dataclasses.asdict deep-copies and is several times slower
        return dict(zip(USAGE_FIELDS, usage_values(self), strict=True))


USAGE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageRow))
usage_values: Callable[[UsageRow], tuple[Any, ...]] = attrgetter(*USAGE_FIELDS)  # a row's values, in field order


def as_utc(value: datetime | str) -> datetime:
    """A timezone-aware UTC datetime from a datetime (naive = UTC) or an ISO-8601 string."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
