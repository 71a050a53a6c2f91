"""What every part of gateway.yaml shares: strict models, limits, budgets, per-alias/key cache policy."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator

from proxy.core.strict import Strict
from proxy.core.units import Duration

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---------------------------------------------------------------- shared pieces


class CachePolicy(Strict):
    """Per alias / per key override of the response cache: a section turns it on for that alias or key
    (even with the global cache off) unless it says `enabled: false`, which turns it off."""

    enabled: bool = True
    ttl: Duration | None = None


class LimitSet(Strict):
    rpm: int | None = Field(None, ge=1, le=100_000_000)
    tpm: int | None = Field(None, ge=1, le=10_000_000_000)
    rpd: int | None = Field(None, ge=1, le=1_000_000_000)


class Limits(LimitSet):
    per_provider: dict[str, LimitSet] = Field(default_factory=dict)
    per_alias: dict[str, LimitSet] = Field(default_factory=dict)


class Budget(Strict):
    usd: float = Field(gt=0, le=1e9)
    period: Literal["daily", "weekly", "monthly"] = "monthly"
    alert_thresholds: list[float] = Field(default_factory=lambda: [0.8, 1.0])

    @field_validator("alert_thresholds")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(t <= 0 or t > 10 for t in v):
            raise ValueError("thresholds are fractions of the budget, e.g. 0.8 for 80%")
        return sorted(v)
