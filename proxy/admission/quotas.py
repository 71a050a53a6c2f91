"""Rate limits per key, team, user, provider, alias and client IP: sliding-window counters of the `limits` library.

A request is checked against every window that applies to it (key rpm/tpm/rpd, the same per provider and per
alias, the key's team, the user owning the key (shared by all their keys), or the client IP before auth).
Windows are `limits` RateLimitItems with the SlidingWindowCounter strategy: in-process they live in
`limits`' MemoryStorage (counters.py); with Redis they live in the key layout of `limits`' RedisStorage
(`LIMITS:{key}` / `LIMITS:{key}/-1`) so `limits` itself reads them (window stats for /v1/usage), while
admission updates all of a request's windows, and its budgets, in one Lua call (redis_counters.py) — one
round trip, all-or-nothing.

Request windows count 1 per call. Token windows are charged with an estimate before the call and
corrected with the upstream's reported usage after it (streams when they finish).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute

from proxy.config.access import TeamConfig
from proxy.config.base import Limits, LimitSet
from proxy.core.errors import GatewayError
from proxy.infra.memo import Memo

if TYPE_CHECKING:
    from proxy.core.identity import KeyInfo

NAMESPACE = "gw"
REDIS_PREFIX = "LIMITS"  # limits' RedisStorage.PREFIX: our Lua script and limits must agree on keys
_LIMIT_NAMES = {"rpm": "requests per minute (RPM)", "rpd": "requests per day (RPD)",
                "tpm": "tokens per minute (TPM)"}


def batch_safe(key: str) -> str:
    """`key` with control characters replaced: they separate the fields of a Redis batch (redis_counters.py),
    and keys carry key, team and alias names."""
    return "".join(ch if ch >= " " else "?" for ch in key) if any(ch < " " for ch in key) else key


@dataclass(frozen=True, slots=True)
class Window:
    """One sliding-window counter: what it limits (`metric`), for whom (`scope`/`owner`, narrowed by
    `sub`/`sub_owner` to one provider or alias). `limit`, `expiry` and the Redis key are precomputed:
    the hot path reads plain attributes."""

    item: RateLimitItem
    ids: tuple[str, ...]  # limits identifiers; key = item.key_for(*ids)
    key: str
    kind: str  # "requests" | "tokens"
    metric: str  # rpm | rpd | tpm
    scope: str  # key | team | user | ip
    owner: str  # key name, team name or IP, for messages
    sub: str = ""  # "" | provider | alias
    sub_owner: str = ""
    limit: int = 0
    expiry: int = 0
    redis_key: str = ""  # limits' RedisStorage current-window key; the previous one is this + "/-1"
    limit_text: str = ""
    redis_spec: str = ""  # "<redis key>\x1f<limit>\x1f<expiry>\x1f", the start of its part of a Redis batch

    @classmethod
    def make(cls, item: RateLimitItem, ids: tuple[str, ...], kind: str, metric: str, scope: str, owner: str,
             sub: str = "", sub_owner: str = "") -> Window:
        key = batch_safe(item.key_for(*ids))
        redis_key = f"{REDIS_PREFIX}:{{{key}}}"
        limit, expiry = int(item.amount), int(item.get_expiry())
        return cls(item, ids, key, kind, metric, scope, owner, sub, sub_owner, limit, expiry, redis_key,
                   str(limit), f"{redis_key}\x1f{limit}\x1f{expiry}\x1f")

    @property
    def reason(self) -> str:
        """`gateway_rate_limited{reason}`: rpm, tpm, rpd, provider_rpd, alias_rpm, team_tpm, ip_rpm..."""
        parts = [p for p in (self.scope if self.scope != "key" else "", self.sub, self.metric) if p]
        return "_".join(parts)

    def describe(self) -> str:
        who = {"key": f"key {self.owner!r}", "team": f"team {self.owner!r}", "user": f"user {self.owner!r}",
               "ip": f"client IP {self.owner}"}
        out = who[self.scope]
        if self.sub:
            out += f", {'model' if self.sub == 'alias' else 'provider'} {self.sub_owner!r}"
        return out


@dataclass(slots=True)
class Stats:
    """A sliding window's state: previous/current counts and their remaining lifetimes (seconds).

    Both storages use limits' convention: the current window's ttl runs from 2*expiry down to expiry,
    at which point it becomes the previous window, whose weight decays to zero over one expiry."""

    prev_count: int = 0
    prev_ttl: float = 0.0
    cur_count: int = 0
    cur_ttl: float = 0.0

    def used(self, expiry: int) -> int:
        return math.floor(self.prev_count * self.prev_ttl / expiry) + self.cur_count

    def remaining(self, w: Window) -> int:
        return max(0, w.limit - self.used(w.expiry))

    def reset_in(self, expiry: int) -> float:
        """Seconds until the count next drops (limits' SlidingWindowCounter get_window_stats rule)."""
        prev = self.prev_ttl % (expiry / self.prev_count) if self.prev_count else math.inf
        # the current window ends when its ttl falls to one expiry (limits: cur_ttl % expiry)
        cur = (self.cur_ttl - expiry if self.cur_ttl > expiry else self.cur_ttl) if self.cur_count else math.inf
        best = min(prev, cur)
        return 0.0 if best == math.inf else best

    def retry_after(self, w: Window, amount: int) -> float:
        """Seconds until `amount` more fits: floor(prev * weight) + cur + amount <= limit, the weight
        falling linearly to 0 at the end of the current window."""
        e, limit = w.expiry, w.limit
        if amount > limit:
            return float(e)  # never fits: say "a window", the message explains
        room = limit - amount - self.cur_count
        if room >= 0:
            # only the previous window's decaying share is in the way
            if not self.prev_count:
                return 0.0
            return max(0.0, self.prev_ttl - (room + 1) * e / self.prev_count)
        # the current window alone is too full: wait for it to end, then for its share to decay
        cur_end = max(0.0, self.cur_ttl - e)
        return cur_end + max(0.0, e * (1 - (limit - amount + 1) / self.cur_count))


def _limit_sets(limits: Limits | None, alias: str, provider: str) -> list[tuple[str, str, LimitSet]]:
    if limits is None:
        return []
    out: list[tuple[str, str, LimitSet]] = [("", "", limits)]
    if provider and (p := limits.per_provider.get(provider)) is not None:
        out.append(("provider", provider, p))
    if (a := limits.per_alias.get(alias)) is not None:
        out.append(("alias", alias, a))
    return out


def _windows(scope: str, owner_id: str, owner_name: str, limits: Limits | None, alias: str,
             provider: str) -> list[Window]:
    out = []
    for sub, sub_owner, ls in _limit_sets(limits, alias, provider):
        for metric, value, cls, kind in (("rpm", ls.rpm, RateLimitItemPerMinute, "requests"),
                                         ("rpd", ls.rpd, RateLimitItemPerDay, "requests"),
                                         ("tpm", ls.tpm, RateLimitItemPerMinute, "tokens")):
            if value is None:
                continue
            item = cls(value, namespace=NAMESPACE)
            # the metric is in the identifiers: an rpm and a tpm of equal size must not share a counter
            ids = (scope, owner_id, sub or "all", sub_owner or "-", metric)
            out.append(Window.make(item, ids, kind, metric, scope, owner_name, sub, sub_owner))
    return out


def all_windows(key: KeyInfo, team_limits: Limits | None) -> list[Window]:
    """Every window a key has (all its providers and aliases), for status views."""
    out: dict[str, Window] = {}
    user = key.user_label or key.user_id or ""
    for scope, oid, oname, limits in (("key", key.id, key.name, key.limits),
                                      ("team", key.team or "", key.team or "", team_limits),
                                      ("user", key.user_id or "", user, key.user_limits)):
        if limits is None:
            continue
        subs = [("", "")] + [(p, "") for p in limits.per_provider] + [("", a) for a in limits.per_alias]
        for provider, alias in subs:
            for w in _windows(scope, oid, oname, limits, alias, provider):
                out.setdefault(w.key, w)
    return list(out.values())


def ip_window(ip: str, rpm: int) -> Window:
    item = RateLimitItemPerMinute(rpm, namespace=NAMESPACE)
    return Window.make(item, ("ip", ip, "all", "-", "rpm"), "requests", "rpm", "ip", ip)


class QuotaPlanner:
    """Which windows apply to (key, alias, provider); memoised, so the hot path only does a dict get."""

    def __init__(self, teams: dict[str, TeamConfig]) -> None:
        self.team_limits = {name: t.limits for name, t in teams.items() if t.limits is not None}
        self._plans: Memo[tuple[str, str, str],
                          tuple[Limits | None, Limits | None, Limits | None, tuple[Window, ...]]] = Memo(100_000)

    def limited(self, key: KeyInfo) -> bool:
        return (key.limits is not None or key.user_limits is not None
                or (key.team is not None and key.team in self.team_limits))

    def windows(self, key: KeyInfo, alias: str, provider: str) -> tuple[Window, ...]:
        team = self.team_limits.get(key.team) if key.team else None
        user = key.user_limits
        if key.limits is None and team is None and user is None:
            return ()
        ck = (key.id, alias, provider)
        plan = self._plans.get(ck)
        # identity check: a key (or its user) edited through the admin API gets a new Limits object
        if plan is not None and plan[0] is key.limits and plan[1] is team and plan[2] is user:
            return plan[3]
        found = _windows("key", key.id, key.name, key.limits, alias, provider)
        if team is not None and key.team:
            found += _windows("team", key.team, key.team, team, alias, provider)
        if user is not None and key.user_id:  # one counter per user, whichever of their keys calls
            found += _windows("user", key.user_id, key.user_label or key.user_id, user, alias, provider)
        windows = tuple(found)
        self._plans.put(ck, (key.limits, team, user, windows))
        return windows


# ---------------------------------------------------------------- responses
_DURATIONS: dict[int, str] = {}


def fmt_duration(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 6s, 1m30s, 2h5m0s."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    s = math.ceil(seconds)
    text = _DURATIONS.get(s)
    if text is None:
        h, rem = divmod(s, 3600)
        mi, sec = divmod(rem, 60)
        text = f"{h}h{mi}m{sec}s" if h else f"{mi}m{sec}s" if mi else f"{sec}s"
        if len(_DURATIONS) < 200_000:  # at most two days of distinct values
            _DURATIONS[s] = text
    return text


def rate_headers(windows: Sequence[Window], stats: list[Stats], headers: dict[str, str]) -> None:
    """OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}, from the tightest window of each
    kind (fewest remaining)."""
    req = tok = None
    req_rem = tok_rem = 0
    for w, s in zip(windows, stats, strict=True):
        rem = w.limit - ((int(s.prev_count * s.prev_ttl / w.expiry) if s.prev_count else 0) + s.cur_count)
        if w.kind == "requests":
            if req is None or rem < req_rem:
                req, req_rem = (w, s), rem
        elif tok is None or rem < tok_rem:
            tok, tok_rem = (w, s), rem
    if req is not None:
        w, s = req
        headers["x-ratelimit-limit-requests"] = w.limit_text
        headers["x-ratelimit-remaining-requests"] = str(req_rem if req_rem > 0 else 0)
        headers["x-ratelimit-reset-requests"] = fmt_duration(s.reset_in(w.expiry))
    if tok is not None:
        w, s = tok
        headers["x-ratelimit-limit-tokens"] = w.limit_text
        headers["x-ratelimit-remaining-tokens"] = str(tok_rem if tok_rem > 0 else 0)
        headers["x-ratelimit-reset-tokens"] = fmt_duration(s.reset_in(w.expiry))


def rate_limited(w: Window, s: Stats, amount: int, headers: dict[str, str]) -> GatewayError:
    """A 429 shaped like OpenAI's: type requests|tokens, code rate_limit_exceeded, Retry-After."""
    wait = s.retry_after(w, amount)
    where = w.describe()
    what = _LIMIT_NAMES[w.metric]
    if amount > w.limit:
        msg = (f"Request too large for {what} on {where}: Limit {w.limit}, Requested {amount}. "
               "Reduce the prompt or max_tokens.")
    else:
        msg = (f"Rate limit reached for {what} on {where}: Limit {w.limit}, Used {min(s.used(w.expiry), w.limit)}, "
               f"Requested {amount}. Please try again in {fmt_duration(wait)}.")
    h = dict(headers)
    h["Retry-After"] = str(max(1, math.ceil(wait)))
    return GatewayError(429, msg, w.kind, code="rate_limit_exceeded", headers=h)
