"""The subscriptions as the producer and the dispatcher read them: in memory, re-read from the database
every `refresh_interval` (changes made on other replicas) and at once after a local admin change.

`wants_completed` / `wants_failed` are precomputed so the metering hook costs one attribute read per
request while no subscription asks for invocation events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from proxy.ledger.rows import utcnow


@dataclass(frozen=True, slots=True)
class Event:
    """An event on its way to the database. `keys` (a key's id and name) and `team` are what the
    subscription filters match; `id` is set for events that must be delivered once whoever produces them."""

    type: str
    data: dict[str, Any]
    timestamp: float
    keys: tuple[str, ...] = ()
    team: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    events: frozenset[str]
    active: bool
    keys: frozenset[str]
    teams: frozenset[str]
    secrets: tuple[str, ...]  # the current secret first, then the previous one during its grace period
    failing_since: datetime | None
    source: str

    def wants(self, event: Event) -> bool:
        if not self.active or event.type not in self.events:
            return False
        if self.keys and (event.keys or event.team) and not self.keys.intersection(event.keys):
            return False
        return not (self.teams and (event.keys or event.team) and event.team not in self.teams)


def subscription(row: Mapping[str, Any], config_secret: str | None, now: datetime) -> Subscription:
    f = row.get("filter") or {}
    secrets = [config_secret or row.get("secret")]
    prev, until = row.get("previous_secret"), row.get("previous_expires_at")
    if prev and until is not None and until > now:
        secrets.append(prev)
    return Subscription(row["id"], row["url"], frozenset(row.get("events") or ()), bool(row["active"]),
                        frozenset(f.get("keys") or ()), frozenset(f.get("teams") or ()),
                        tuple(s for s in secrets if s), row.get("failing_since"), row.get("source") or "api")


class Registry:
    def __init__(self) -> None:
        self.subs: dict[str, Subscription] = {}
        self.loaded = False
        self.wants_completed = False
        self.wants_failed = False

    def load(self, rows: Iterable[Mapping[str, Any]], config_secrets: Mapping[str, str]) -> None:
        now = utcnow()
        subs = {r["id"]: subscription(r, config_secrets.get(r["id"]), now) for r in rows}
        # a subscription without a usable secret (a cfg: row another replica's config declared) cannot sign
        self.subs = {k: s for k, s in subs.items() if s.secrets}
        live = [s for s in self.subs.values() if s.active]
        self.wants_completed = any("invocation.completed" in s.events for s in live)
        self.wants_failed = any("invocation.failed" in s.events for s in live)
        self.loaded = True

    @property
    def any_active(self) -> bool:
        return any(s.active for s in self.subs.values())

    def matching(self, event: Event) -> list[Subscription]:
        return [s for s in self.subs.values() if s.wants(event)]

    def update(self, sub: Subscription) -> None:
        """A change this replica made (failing_since, disabled): seen before the next refresh."""
        self.subs[sub.id] = sub
