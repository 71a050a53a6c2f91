"""USD budgets per key, per team and per user (across all of the user's keys): periods, spend counters,
reservations and threshold alerts.

A budget is `{usd, period: daily|weekly|monthly, alert_thresholds}`; periods start at midnight / Monday /
the 1st in `budgets.timezone`. Admission refuses a call when `spend + reserved >= usd` for the current
period; otherwise it reserves the call's estimated cost, and the finish hook settles it (spend += actual,
reserved -= estimate). So concurrent calls cannot all slip under the line together: the overshoot is at
most the last admitted call's estimation error. With Redis the counters are shared by every replica
(`INCRBYFLOAT`, see admission.py); in-process they live in `MemoryBook`.

Crossing a threshold (e.g. 80%, 100%) emits a `budget.threshold` event on the in-process `EventBus` once
per (scope, name, period, threshold) across replicas — the ledger's unique constraint decides who reports
it — and the admin API lists the alerts; reaching the limit emits `budget.exceeded`. The webhooks
producer subscribes to the bus (app.py) and gives both a per-occurrence id, so they are delivered once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from proxy.admission.quotas import batch_safe
from proxy.config.base import Budget
from proxy.core.errors import INSUFFICIENT_QUOTA, GatewayError
from proxy.infra.asyncutil import Background
from proxy.observability.logs import get_logger

log = get_logger("gateway.budgets")
# reservations of calls whose replica died before settling expire after this long
RESERVATION_TTL = 900


@dataclass(frozen=True, slots=True)
class Period:
    kind: str  # daily | weekly | monthly
    id: str  # e.g. "monthly:2025-03-01"
    start: datetime
    end: datetime
    end_ts: float

    def as_dict(self) -> dict[str, Any]:
        return {"period": self.kind, "period_start": self.start.isoformat(), "period_end": self.end.isoformat()}


def _day(d: datetime, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def period_at(kind: str, now: datetime, tz: ZoneInfo) -> Period:
    """The period containing `now` (aware); wall-clock boundaries, so DST days are 23 or 25 hours."""
    local = now.astimezone(tz)
    if kind == "daily":
        start = _day(local, tz)
        end = _day(start.replace(tzinfo=None) + timedelta(days=1), tz)
    elif kind == "weekly":
        start = _day(local.replace(tzinfo=None) - timedelta(days=local.weekday()), tz)
        end = _day(start.replace(tzinfo=None) + timedelta(days=7), tz)
    elif kind == "monthly":
        start = datetime(local.year, local.month, 1, tzinfo=tz)
        end = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=tz)
    else:
        raise ValueError(f"unknown budget period {kind!r}")
    return Period(kind, f"{kind}:{start.date().isoformat()}", start, end, end.timestamp())


class PeriodClock:
    """Current periods, recomputed only when one ends (the hot path reads a dict)."""

    def __init__(self, timezone: str = "UTC", now: Callable[[], float] = time.time) -> None:
        self.tz = ZoneInfo(timezone)
        self.now = now
        self._current: dict[str, Period] = {}

    def current(self, kind: str) -> Period:
        p = self._current.get(kind)
        t = self.now()
        if p is None or t >= p.end_ts:
            p = period_at(kind, datetime.fromtimestamp(t, UTC), self.tz)
            self._current[kind] = p
        return p


class BudgetLine:
    """One budget a call is charged to, in one period (storage keys precomputed: hot-path reads)."""

    __slots__ = ("budget", "first_alert", "label", "name", "period", "reserved_key", "scope", "spend_key")

    def __init__(self, scope: str, name: str, label: str, budget: Budget, period: Period) -> None:
        self.scope = scope  # key | team | user
        self.name = name  # key id, team name or user id: the storage identity
        self.label = label  # key name, team name or user e-mail: what people read (metrics, messages)
        self.budget = budget
        self.period = period
        self.spend_key = batch_safe(f"gw:budget:{scope}:{name}:{period.id}")
        self.reserved_key = self.spend_key + ":reserved"
        # below this spend no alert threshold can have been crossed (thresholds are sorted)
        self.first_alert = budget.usd * budget.alert_thresholds[0] if budget.alert_thresholds else math.inf

    @property
    def ttl(self) -> int:
        """Spend counters outlive their period by a day, for the admin view right after a reset."""
        return max(60, int(self.period.end_ts - time.time()) + 86400)


def over_budget(line: BudgetLine, spend: float) -> GatewayError:
    who = f"{line.scope} {line.label!r}"
    reset = max(1, int(line.period.end_ts - time.time()))
    return GatewayError(
        429,
        f"You exceeded the {line.budget.period} budget of {who}: ${line.budget.usd:.2f}, spent ${spend:.4f}. "
        f"It resets at {line.period.end.isoformat()}.",
        INSUFFICIENT_QUOTA, code="insufficient_quota", headers={"Retry-After": str(reset)},
    )


class MemoryBook:
    """In-process spend and reservations per (budget, period)."""

    def __init__(self) -> None:
        self.spend: dict[str, float] = {}
        self.reserved: dict[str, float] = {}
        self._ends: dict[str, float] = {}

    def get(self, line: BudgetLine) -> float:
        return self.spend.get(line.spend_key, 0.0)

    def seed(self, line: BudgetLine, value: float) -> None:
        """Add spend from before this process started (the ledger's), to what it counted since."""
        k = line.spend_key
        self.spend[k] = self.spend.get(k, 0.0) + value
        self._ends[k] = line.period.end_ts

    def check(self, lines: list[BudgetLine]) -> tuple[int, list[float]]:
        """(index of the first line with spend + reservations at its limit, or -1; spends)."""
        spends = [self.spend.get(ln.spend_key, 0.0) for ln in lines]
        for i, (ln, s) in enumerate(zip(lines, spends, strict=True)):
            if s + self.reserved.get(ln.reserved_key, 0.0) >= ln.budget.usd:
                return i, spends
        return -1, spends

    def reserve(self, lines: list[BudgetLine], estimate: float) -> None:
        if estimate <= 0:
            return
        for ln in lines:
            k = ln.reserved_key
            self.reserved[k] = self.reserved.get(k, 0.0) + estimate

    def settle(self, lines: list[BudgetLine], actual: float, release: float,
               reserved_lines: list[BudgetLine]) -> list[float]:
        for ln in reserved_lines:
            k = ln.reserved_key
            left = self.reserved.get(k, 0.0) - release
            if left <= 1e-12:
                self.reserved.pop(k, None)
            else:
                self.reserved[k] = left
        out = []
        for ln in lines:
            k = ln.spend_key
            spend = self.spend[k] = self.spend.get(k, 0.0) + actual
            if k not in self._ends:
                self._ends[k] = ln.period.end_ts
            out.append(spend)
        return out

    def sweep(self) -> None:
        """Forget periods that ended more than a day ago."""
        cutoff = time.time() - 86400
        for k in [k for k, end in self._ends.items() if end < cutoff]:
            self.spend.pop(k, None)
            self.reserved.pop(k + ":reserved", None)
            self._ends.pop(k, None)


class EventBus:
    """In-process events (budget alerts, admin key changes); the webhooks producer subscribes (app.py).

    Subscribers get a dict; coroutine subscribers run as tasks so emit() never blocks its caller."""

    def __init__(self, keep: int = 500) -> None:
        self.subscribers: list[Callable[[dict[str, Any]], Any]] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._tasks = Background()

    def subscribe(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        self.subscribers.append(callback)

    def emit(self, event: dict[str, Any]) -> None:
        self.recent.append(event)
        for cb in list(self.subscribers):
            try:
                res = cb(event)
                if asyncio.iscoroutine(res):
                    self._tasks.spawn(res)
            except Exception:
                log.exception("event_subscriber_failed", event=event.get("type"))


def crossed(line: BudgetLine, before: float, after: float) -> list[float]:
    """Thresholds (fractions) passed by going from `before` to `after` spend."""
    usd = line.budget.usd
    return [t for t in line.budget.alert_thresholds if before < t * usd <= after]


def exceeded_event(line: BudgetLine, spend: float) -> dict[str, Any]:
    """Spend reached the budget's limit: from now on calls charged to it are refused."""
    return {**alert_event(line, 1.0, spend), "type": "budget.exceeded"}


def alert_event(line: BudgetLine, threshold: float, spend: float) -> dict[str, Any]:
    return {
        "type": "budget.threshold",
        "at": datetime.now(UTC).isoformat(),
        "scope": line.scope,
        "name": line.label,
        "id": line.name,
        "threshold": threshold,
        "spend_usd": round(spend, 8),
        "limit_usd": line.budget.usd,
        **line.period.as_dict(),
    }
