"""Where admission keeps its counters: the `Counters` interface, and the in-process `LocalCounters`
(windows in limits' MemoryStorage, budgets in a MemoryBook). The Redis implementation, shared by every
replica, is `redis_counters.RedisCounters`.

Both answer the same calls: `acquire` checks all of a call's rate windows and budgets and charges all of
them or none; `settle` corrects them after the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from proxy.admission.budgets import BudgetLine, MemoryBook
from proxy.admission.quotas import Stats, Window, fmt_duration
from proxy.infra.memo import Memo


@dataclass(slots=True)
class Outcome:
    failed_window: int = -1
    failed_budget: int = -1
    stats: list[Stats] = field(default_factory=list)  # per window, after this call's charge
    spends: list[float] = field(default_factory=list)  # per budget line, before this call


# (line, spend after the settlement, cost it added): threshold alerts and gauges
OnSpend = Callable[[BudgetLine, float, float], None]


class Counters(Protocol):
    async def acquire(self, windows: Sequence[Window], amounts: list[int], lines: list[BudgetLine],
                      estimate: float) -> Outcome | None: ...

    on_spend: OnSpend | None

    def settle(self, windows: list[Window], amounts: list[int], lines: list[BudgetLine], cost: float,
               reserved: list[BudgetLine], release: float) -> None: ...

    async def seed(self, line: BudgetLine, spend: float) -> None: ...

    async def spend(self, line: BudgetLine) -> float: ...

    async def window_stats(self, w: Window) -> tuple[int, float]: ...

    def sweep(self) -> None: ...

    async def drain(self) -> None: ...


def pairs(lines: list[BudgetLine], reserved: list[BudgetLine]) -> list[tuple[BudgetLine, BudgetLine | None, bool]]:
    """Match each budget now (spend goes to the current period) with its admission-time reservation:
    (line, reservation or None, charge the cost?). A reservation whose budget went away meanwhile is
    only released."""
    by_who = {(r.scope, r.name): r for r in reserved}
    out = [(ln, by_who.pop((ln.scope, ln.name), None), True) for ln in lines]
    return out + [(r, r, False) for r in by_who.values()]


class LeanMemoryStorage(MemoryStorage):
    """limits' MemoryStorage without its per-call expiry task (upstream schedules one after each incr, and
    it scans every counter); `sweep()` drops expired counters from a timer instead."""

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return charge(self, key, expiry, amount, time.time())

    async def decr(self, key: str, amount: int = 1) -> int:
        return charge(self, key, 0, -amount, time.time())

    def sweep(self) -> int:
        now = time.time()
        dead = [k for k, exp in self.expirations.items() if exp <= now]
        for k in dead:
            self.storage.pop(k, None)
            self.expirations.pop(k, None)
            self.locks.pop(k, None)
        return len(dead)


def charge(st: MemoryStorage, key: str, expiry: float, amount: int, now: float) -> int:
    """Add `amount` (negative: refund, floored at 0) to a counter of limits' MemoryStorage."""
    if st.expirations.get(key, 0) <= now:  # absent or expired: a fresh counter
        if amount <= 0:
            return 0
        st.expirations[key] = now + expiry
        st.storage[key] = amount
        return amount
    value = max(0, st.storage[key] + amount)
    st.storage[key] = value
    return value


class MemoryWindows:
    """In-process windows: one process's view (Redis shares them between replicas).

    The counters live in limits' MemoryStorage under the keys and arithmetic of its sliding window counter
    (`<key>/<int(now / expiry)>`), so `limiter` (limits' SlidingWindowCounterRateLimiter) reads them for
    status views. The request path updates them synchronously in one pass rather than through limits'
    async per-window API (several awaited, error-wrapped calls per window): a call's check-then-charge
    over all its windows is then atomic in the event loop, and costs about a microsecond per window."""

    def __init__(self) -> None:
        self.storage = LeanMemoryStorage()
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._names: Memo[str, tuple[int, str, str]] = Memo(200_000)

    def names(self, w: Window, now: float) -> tuple[int, str, str]:
        """(window index, current key, previous key): limits' `<key>/<int(now / expiry)>` scheme."""
        idx = int(now / w.expiry)
        names = self._names.get(w.key)
        if names is None or names[0] != idx:  # the key strings change once per window
            names = self._names.put(w.key, (idx, f"{w.key}/{idx}", f"{w.key}/{idx - 1}"))
        return names

    def stats(self, w: Window, now: float) -> tuple[Stats, str]:
        e = w.expiry
        _, cur, prev = self.names(w, now)
        st, exps = self.storage.storage, self.storage.expirations
        pc = st.get(prev, 0) if exps.get(prev, 0) > now else 0
        cc = st.get(cur, 0) if exps.get(cur, 0) > now else 0
        left = (1 - (now / e) % 1) * e  # until the current window ends
        return Stats(pc, left if pc else 0.0, cc, left + e), cur

    def acquire(self, windows: Sequence[Window], amounts: list[int]) -> tuple[int, list[Stats]]:
        """Check all windows, then charge all of them; nothing is charged when one is full.
        Returns (index of the first full window or -1, stats after charging)."""
        now = time.time()
        read = [self.stats(w, now) for w in windows]
        stats = [s for s, _ in read]
        for i, (w, s) in enumerate(zip(windows, stats, strict=True)):
            a = amounts[i]
            if s.used(w.expiry) + (a if a > 0 else 1) > w.limit:
                return i, stats
        for w, a, (s, cur) in zip(windows, amounts, read, strict=True):
            if a > 0:
                s.cur_count = charge(self.storage, cur, 2 * w.expiry, a, now)
        return -1, stats

    def admit(self, windows: Sequence[Window], amounts: list[int], headers: dict[str, str]) -> bool:
        """The hot path of `acquire`: check and charge all windows and write the rate-limit headers, with
        as few objects and calls as possible. False when a window is full (nothing charged: call
        `acquire` for the details the 429 needs)."""
        now = time.time()
        st, exps, names = self.storage.storage, self.storage.expirations, self._names
        curs = []
        req_rem = tok_rem = -1
        req = tok = None
        req_reset = tok_reset = 0.0
        for i, w in enumerate(windows):
            e = w.expiry
            nm = names.get(w.key)
            if nm is None or nm[0] != int(now / e):
                nm = self.names(w, now)
            cur, prev = nm[1], nm[2]
            pc = st.get(prev, 0) if exps.get(prev, 0) > now else 0
            cc = st.get(cur, 0) if exps.get(cur, 0) > now else 0
            left = (1 - (now / e) % 1) * e  # until the current window ends
            a = amounts[i]
            rem = w.limit - (int(pc * left / e) if pc else 0) - cc - (a if a > 0 else 1)
            if rem < 0:
                return False
            curs.append(cur)
            if a <= 0:
                rem += 1
            if w.kind == "requests":
                if req is None or rem < req_rem:
                    # limits' reset rule: the next moment the count drops (see Stats.reset_in)
                    req, req_rem = w, rem
                    req_reset = min(left % (e / pc), left) if pc else left
            elif tok is None or rem < tok_rem:
                tok, tok_rem = w, rem
                tok_reset = (min(left % (e / pc), left) if cc + a else left % (e / pc)) if pc else (
                    left if cc + a else 0.0)
        for i, a in enumerate(amounts):
            if a > 0:
                cur = curs[i]
                if exps.get(cur, 0) > now:
                    st[cur] += a
                else:  # a fresh counter (limits' MemoryStorage keeps it two windows)
                    exps[cur] = now + 2 * windows[i].expiry
                    st[cur] = a
        if req is not None:
            headers["x-ratelimit-limit-requests"] = req.limit_text
            headers["x-ratelimit-remaining-requests"] = str(req_rem)
            headers["x-ratelimit-reset-requests"] = fmt_duration(req_reset)
        if tok is not None:
            headers["x-ratelimit-limit-tokens"] = tok.limit_text
            headers["x-ratelimit-remaining-tokens"] = str(tok_rem)
            headers["x-ratelimit-reset-tokens"] = fmt_duration(tok_reset)
        return True

    def adjust(self, windows: list[Window], amounts: list[int]) -> None:
        """Force-charge (or refund, negative) without a limit check: the usage already happened."""
        now = time.time()
        st, exps, names = self.storage.storage, self.storage.expirations, self._names
        for w, a in zip(windows, amounts, strict=True):
            nm = names.get(w.key)
            if nm is None or nm[0] != int(now / w.expiry):
                nm = self.names(w, now)
            cur = nm[1]
            if exps.get(cur, 0) > now:
                v = st[cur] + a
                st[cur] = v if v > 0 else 0
            elif a > 0:
                exps[cur] = now + 2 * w.expiry
                st[cur] = a


class LocalCounters:
    """In-process: limits' MemoryStorage for windows, MemoryBook for budgets; nothing here awaits, so each
    call's check-and-charge is atomic in the event loop."""

    def __init__(self) -> None:
        self.windows = MemoryWindows()
        self.book = MemoryBook()
        self.on_spend: OnSpend | None = None

    async def acquire(self, windows: Sequence[Window], amounts: list[int], lines: list[BudgetLine],
                      estimate: float) -> Outcome:
        return self.acquire_now(windows, amounts, lines, estimate)

    def admit(self, windows: Sequence[Window], amounts: list[int], lines: list[BudgetLine], estimate: float,
              headers: dict[str, str]) -> bool:
        """Admission's hot path: charge everything and write the rate-limit headers, or return False
        having changed nothing (then `acquire_now` says what is full)."""
        book = self.book
        for ln in lines:
            if book.spend.get(ln.spend_key, 0.0) + book.reserved.get(ln.reserved_key, 0.0) >= ln.budget.usd:
                return False
        if windows and not self.windows.admit(windows, amounts, headers):
            return False
        if lines and estimate > 0:
            book.reserve(lines, estimate)
        return True

    def acquire_now(self, windows: Sequence[Window], amounts: list[int], lines: list[BudgetLine],
                    estimate: float) -> Outcome:
        """`acquire` without a coroutine: admission calls this directly on its hot path."""
        fb, spends = self.book.check(lines) if lines else (-1, [])
        if fb >= 0:
            now = time.time()
            return Outcome(-1, fb, [self.windows.stats(w, now)[0] for w in windows], spends)
        fw, stats = self.windows.acquire(windows, amounts) if windows else (-1, [])
        if fw < 0 and lines:
            self.book.reserve(lines, estimate)
        return Outcome(fw, -1, stats, spends)

    def settle(self, windows: list[Window], amounts: list[int], lines: list[BudgetLine], cost: float,
               reserved: list[BudgetLine], release: float) -> None:
        if windows:
            self.windows.adjust(windows, amounts)
        if lines or reserved:
            spends = self.book.settle(lines, cost, release, reserved)
            if self.on_spend is not None:
                for line, spend in zip(lines, spends, strict=True):
                    if spend >= line.first_alert:  # below the first threshold there is nothing to report
                        self.on_spend(line, spend, cost)

    async def seed(self, line: BudgetLine, spend: float) -> None:
        self.book.seed(line, spend)

    async def spend(self, line: BudgetLine) -> float:
        return self.book.get(line)

    async def window_stats(self, w: Window) -> tuple[int, float]:
        stats = await self.windows.limiter.get_window_stats(w.item, *w.ids)
        return stats.remaining, max(0.0, stats.reset_time - time.time())

    def sweep(self) -> None:
        self.windows.storage.sweep()
        self.book.sweep()

    async def drain(self) -> None:
        return None
