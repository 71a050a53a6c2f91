"""Where admission keeps its counters: in-process (`LocalCounters`) or shared in Redis (`RedisCounters`).

Both answer the same calls: `acquire` checks all of a call's rate windows and budgets and charges all of
them or none; `settle` corrects them after the call. With Redis all of a call's counters go in one
atomic Lua call (`SCRIPT`), so concurrent replicas cannot both take the last slot; and the calls of one
event-loop turn share one EVALSHA, so a busy replica pays far less than a round trip per request.
The window half of the script is limits' sliding-window-counter Lua (acquire_sliding_window.lua)
generalised to several windows, on the same keys, so `limits`' own RedisStorage reads what it writes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from limits.aio.strategies import SlidingWindowCounterRateLimiter

from . import metrics as m
from .budgets import RESERVATION_TTL, BudgetLine, MemoryBook
from .logs import get_logger
from .quotas import MemoryWindows, Stats, Window
from .redis_client import REDIS_ERRORS, RedisClient

log = get_logger("gateway.counters")


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


# One EVALSHA runs a batch of entries (the admissions and settlements queued during one event-loop turn),
# each all-or-nothing. The batch is ONE argument (entries separated by \x1e, fields by \x1f): redis-py
# encodes one string instead of a dozen per call. Keys travel inside it too, so this needs a standalone
# Redis (or Sentinel), not Redis Cluster. Entry fields: mode (a = acquire, s = settle), n windows,
# b budgets; per window: current key (limits' `LIMITS:{key}`; previous = current .. '/-1'), limit,
# expiry seconds, amount (settle: signed correction); per budget: spend key, reserved key, then acquire:
# limit, estimate, reservation ttl / settle: cost, release, spend ttl.
# Returns one line per entry: failed (0, or 1-based: windows then budgets); per window "pc,pttl,cc,cttl"
# (ms, before charging); per budget the spend — fields separated by ';'.
SCRIPT = """
local out = {}
for entry in string.gmatch(ARGV[1], '[^\\30]+') do
  local f = {}
  for tok in string.gmatch(entry, '[^\\31]+') do f[#f + 1] = tok end
  local mode, n, b, p = f[1], tonumber(f[2]), tonumber(f[3]), 4
  local failed, res, curs, amts, exps, bks = 0, {}, {}, {}, {}, {}
  for i = 1, n do
    local cur = f[p]
    local prev = cur .. '/-1'
    local limit, expiry, amount = tonumber(f[p + 1]), tonumber(f[p + 2]) * 1000, tonumber(f[p + 3])
    p = p + 4
    -- limits' layout: the previous window only ever comes from renaming the current one when it ends,
    -- so it expires exactly one window before the current one: its ttl is cttl - expiry, no PTTL needed
    local cttl, cc, pc = redis.call('pttl', cur), 0, 0
    if cttl > 0 and cttl < expiry then
      -- the current window ended: it becomes the previous one (limits' acquire_sliding_window.lua)
      redis.call('rename', cur, prev)
      redis.call('set', cur, 0, 'PX', cttl + expiry)
      pc = tonumber(redis.call('get', prev)) or 0
      cttl = cttl + expiry
    elseif cttl > 0 then
      local v = redis.call('mget', cur, prev)
      cc, pc = tonumber(v[1]) or 0, tonumber(v[2]) or 0
    else
      cttl = 0  -- no current window (and so no previous one) yet
    end
    local pttl = 0
    if pc > 0 then pttl = math.max(cttl - expiry, 0) end
    if mode == 'a' and failed == 0 and math.floor(pc * pttl / expiry) + cc + math.max(amount, 1) > limit then
      failed = i
    end
    curs[i], amts[i], exps[i] = cttl > 0, amount, expiry
    res[#res + 1] = pc .. ',' .. pttl .. ',' .. cc .. ',' .. cttl
  end
  for j = 1, b do
    local sk, rk, x, y, ttl = f[p], f[p + 1], f[p + 2], f[p + 3], tonumber(f[p + 4])
    p = p + 5
    local spend, reserved
    if mode == 'a' then
      local v = redis.call('mget', sk, rk)
      spend, reserved = v[1] or '0', tonumber(v[2]) or 0
      if failed == 0 and tonumber(spend) + reserved >= tonumber(x) then
        failed = n + j
      end
      bks[j] = {rk, y, ttl}
    else
      spend = '0'
      if tonumber(x) ~= 0 then
        spend = redis.call('incrbyfloat', sk, x)
        redis.call('expire', sk, ttl)
      end
      if tonumber(y) > 0 and redis.call('exists', rk) == 1 then
        if tonumber(redis.call('incrbyfloat', rk, '-' .. y)) <= 1e-9 then redis.call('del', rk) end
      end
    end
    res[#res + 1] = spend
  end
  if failed == 0 then
    for i = 1, n do
      local cur, amt = f[4 * i], amts[i]
      if amt > 0 then
        if curs[i] then
          redis.call('incrby', cur, amt)
        else
          redis.call('set', cur, amt, 'PX', exps[i] * 2)
        end
      elseif amt < 0 and curs[i] then
        if redis.call('incrby', cur, amt) < 0 then redis.call('set', cur, 0, 'KEEPTTL') end
      end
    end
    if mode == 'a' then
      for j = 1, b do
        local bk = bks[j]
        if tonumber(bk[2]) > 0 then
          redis.call('incrbyfloat', bk[1], bk[2])
          redis.call('expire', bk[1], bk[3])  -- outlives in-flight calls; gone once a replica dies
        end
      end
    end
  end
  res[#res + 1] = ''
  out[#out + 1] = failed .. ';' .. table.concat(res, ';')
end
return table.concat(out, '\\n')
"""
US, RS = "\x1f", "\x1e"


@dataclass(slots=True)
class _Entry:
    spec: str
    windows: Sequence[Window]
    amounts: list[int]
    nbudgets: int
    future: asyncio.Future[Outcome | None] | None = None  # acquisitions
    done: Callable[[list[float]], None] | None = None  # settlements: the spends, in budget order


def _parse(entry: _Entry, line: bytes) -> tuple[Outcome, list[float]]:
    parts = line.split(b";")
    failed = int(parts[0])
    n = len(entry.windows)
    stats = []
    for i, (w, amt) in enumerate(zip(entry.windows, entry.amounts, strict=True)):
        pc, pttl, cc, cttl = map(int, parts[1 + i].split(b","))
        if failed == 0 and amt > 0:
            cc += amt
            cttl = cttl or 2000 * w.expiry  # a window this charge created
        stats.append(Stats(pc, pttl / 1000, cc, cttl / 1000))
    spends = [float(v) for v in parts[1 + n: 1 + n + entry.nbudgets]]
    if failed == 0:
        return Outcome(-1, -1, stats, spends), spends
    if failed <= n:
        return Outcome(failed - 1, -1, stats, spends), spends
    return Outcome(-1, failed - 1 - n, stats, spends), spends


class RedisCounters:
    """Counters in Redis, shared by every replica; see SCRIPT. Calls queue up and go out together: one
    round trip per event-loop turn (at most `max_inflight` batches on the wire), not one per call."""

    def __init__(self, redis: RedisClient, *, max_batch: int = 512, max_inflight: int = 2,
                 settle_interval: float = 0.05) -> None:
        self.redis = redis
        self.script = redis.client.register_script(SCRIPT)
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.settle_interval = settle_interval
        self.on_spend: OnSpend | None = None
        self._agg_windows: dict[str, list[Any]] = {}  # redis key -> [window, summed correction]
        self._agg_budgets: dict[tuple[str, str], list[Any]] = {}  # (spend, reserved) -> [line, cost, release]
        self._settle_timer: asyncio.TimerHandle | None = None
        self._pending: list[_Entry] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self._limiter: SlidingWindowCounterRateLimiter | None = None

    # ------------------------------------------------------------ batching
    def _submit(self, entry: _Entry) -> None:
        self._pending.append(entry)
        if not self._scheduled and len(self._inflight) < self.max_inflight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._scheduled = False
        while self._pending and len(self._inflight) < self.max_inflight:
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._inflight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self._pending and not self._scheduled:
            self._kick()

    async def _flush(self, batch: list[_Entry]) -> None:
        acquiring = any(e.future is not None for e in batch)
        try:
            raw = await self.script(keys=(), args=(RS.join([e.spec for e in batch]),))
        except REDIS_ERRORS as err:
            self.redis.failed("admit" if acquiring else "settle", err)
            for e in batch:
                if e.future is not None and not e.future.done():
                    if self.redis.fail_closed:
                        e.future.set_exception(self.redis.unavailable())
                    else:
                        e.future.set_result(None)
            return
        for e, line in zip(batch, raw.split(b"\n"), strict=True):
            outcome, spends = _parse(e, line)
            if e.future is not None:
                if not e.future.done():
                    e.future.set_result(outcome)
            elif e.done is not None:
                try:
                    e.done(spends)
                except Exception:  # a hook's bug must not lose the rest of the batch
                    log.exception("settle_callback_failed")

    async def drain(self) -> None:
        """Send what is queued and wait for it (shutdown: settlements owed by finished calls)."""
        if self._settle_timer is not None:
            self._settle_timer.cancel()
        self._flush_settles()
        for _ in range(100):
            if not self._pending and not self._inflight:
                return
            if self._pending and not self._scheduled:
                self._kick()
            if self._inflight:
                await asyncio.wait(list(self._inflight), timeout=5)

    # ------------------------------------------------------------ calls
    async def acquire(self, windows: Sequence[Window], amounts: list[int], lines: list[BudgetLine],
                      estimate: float) -> Outcome | None:
        if not self.redis.up:  # down: the failure mode decides at once, no queueing behind a dead socket
            return await self.redis.call("admit", _never, None)
        spec = [f"a{US}{len(windows)}{US}{len(lines)}"]
        spec += [f"{w.redis_spec}{a}" for w, a in zip(windows, amounts, strict=True)]
        spec += [f"{ln.spend_key}{US}{ln.reserved_key}{US}{ln.budget.usd!r}{US}{estimate!r}{US}{RESERVATION_TTL}"
                 for ln in lines]
        fut: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._submit(_Entry(US.join(spec), windows, amounts, len(lines), future=fut))
        return await fut

    def settle(self, windows: list[Window], amounts: list[int], lines: list[BudgetLine], cost: float,
               reserved: list[BudgetLine], release: float) -> None:
        """Add to this replica's pending corrections; they go out summed per counter every
        `settle_interval`: under load thousands of settlements become a few increments. Reservations are
        held until then, so a late settlement can only make admission stricter, never looser."""
        if not self.redis.up:
            m.BACKEND_ERRORS.labels("redis", "settle").inc()
            return
        aw = self._agg_windows
        for w, a in zip(windows, amounts, strict=True):
            slot = aw.get(w.redis_key)
            if slot is None:
                aw[w.redis_key] = [w, a]
            else:
                slot[1] += a
        ab = self._agg_budgets
        for ln, r, charged in pairs(lines, reserved):
            k = (ln.spend_key, (r or ln).reserved_key)
            c = cost if charged else 0.0
            rel = release if r is not None else 0.0
            bslot = ab.get(k)
            if bslot is None:
                ab[k] = [ln, c, rel]
            else:
                bslot[1] += c
                bslot[2] += rel
        if self._settle_timer is None:
            self._settle_timer = asyncio.get_running_loop().call_later(self.settle_interval, self._flush_settles)

    def _flush_settles(self) -> None:
        self._settle_timer = None
        if not self._agg_windows and not self._agg_budgets:
            return
        wins = [slot for slot in self._agg_windows.values() if slot[1]]
        buds = list(self._agg_budgets.items())
        self._agg_windows, self._agg_budgets = {}, {}
        spec = [f"s{US}{len(wins)}{US}{len(buds)}"] + [f"{w.redis_spec}{a}" for w, a in wins]
        for (spend_key, reserved_key), (ln, c, rel) in buds:
            spec.append(f"{spend_key}{US}{reserved_key}{US}{_num(c)}{US}{_num(rel)}{US}{ln.ttl}")

        def done(spends: list[float]) -> None:
            if self.on_spend is not None:
                for (_, (ln, c, _rel)), spend in zip(buds, spends, strict=True):
                    if c:
                        self.on_spend(ln, spend, c)

        self._submit(_Entry(US.join(spec), [w for w, _ in wins], [a for _, a in wins], len(buds), done=done))

    async def seed(self, line: BudgetLine, spend: float) -> None:
        # NX: only when no replica has counted this period yet (fresh Redis, lost keys)
        await self.redis.quietly("budget_seed", lambda: self.redis.client.set(
            line.spend_key, _num(spend), nx=True, ex=line.ttl), None)

    async def spend(self, line: BudgetLine) -> float:
        raw = await self.redis.quietly("budget_get", lambda: self.redis.client.get(line.spend_key), None)
        return float(raw) if raw is not None else 0.0

    def limiter(self) -> SlidingWindowCounterRateLimiter:
        """limits' own view of the same windows (through our connection pool)."""
        if self._limiter is None:
            from limits.aio.storage import RedisStorage

            storage = RedisStorage("async+redis://", implementation="redispy",
                                   connection_pool=self.redis.client.connection_pool)
            self._limiter = SlidingWindowCounterRateLimiter(storage)
        return self._limiter

    async def window_stats(self, w: Window) -> tuple[int, float]:
        limiter = self.limiter()
        stats = await self.redis.quietly("window_stats", lambda: limiter.get_window_stats(w.item, *w.ids), None)
        if stats is None:
            return w.limit, 0.0
        return stats.remaining, max(0.0, math.ceil((stats.reset_time - time.time()) * 1000) / 1000)

    def sweep(self) -> None:
        return None  # Redis expires its own keys


async def _never() -> None:  # pragma: no cover - only reached through RedisClient.call while down
    return None


def _num(value: float) -> str:
    return repr(float(value))  # exponent notation is fine for INCRBYFLOAT
