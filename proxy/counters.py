"""Where admission keeps its counters: in-process (`LocalCounters`) or shared in Redis (`RedisCounters`).

Both answer the same calls: `acquire` checks all of a call's rate windows and budgets and charges all of
them or none; `settle` corrects them after the call. With Redis each is one EVALSHA of `SCRIPT`, so a
request costs one round trip whatever number of windows and budgets it has, and concurrent replicas
cannot both take the last slot. The window half of the script is limits' sliding-window-counter Lua
(acquire_sliding_window.lua) generalised to several windows, on the same keys, so `limits`' own
RedisStorage reads what it writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from limits.aio.strategies import SlidingWindowCounterRateLimiter

from .budgets import RESERVATION_TTL, BudgetLine, MemoryBook
from .quotas import MemoryWindows, Stats, Window
from .redis_client import RedisClient


@dataclass(slots=True)
class Outcome:
    failed_window: int = -1
    failed_budget: int = -1
    stats: list[Stats] = field(default_factory=list)  # per window, after this call's charge
    spends: list[float] = field(default_factory=list)  # per budget line, before this call


class Counters(Protocol):
    async def acquire(self, windows: tuple[Window, ...] | list[Window], amounts: list[int],
                      lines: list[BudgetLine], estimate: float) -> Outcome | None: ...

    async def settle(self, windows: list[Window], amounts: list[int], lines: list[BudgetLine], cost: float,
                     reserved: list[BudgetLine], release: float) -> list[float] | None: ...

    async def seed(self, line: BudgetLine, spend: float) -> None: ...

    async def spend(self, line: BudgetLine) -> float: ...

    async def window_stats(self, w: Window) -> tuple[int, float]: ...

    def sweep(self) -> None: ...


def _pairs(lines: list[BudgetLine], reserved: list[BudgetLine]) -> list[tuple[BudgetLine, BudgetLine | None]]:
    """Match each budget now (spend goes to the current period) with its admission-time reservation."""
    by_who = {(r.scope, r.name): r for r in reserved}
    out: list[tuple[BudgetLine, BudgetLine | None]] = [(ln, by_who.pop((ln.scope, ln.name), None)) for ln in lines]
    return out + [(r, r) for r in by_who.values()]  # budget removed meanwhile: only release it


class LocalCounters:
    def __init__(self) -> None:
        self.windows = MemoryWindows()
        self.book = MemoryBook()

    async def acquire(self, windows: tuple[Window, ...] | list[Window], amounts: list[int],
                      lines: list[BudgetLine], estimate: float) -> Outcome:
        # nothing below suspends (LeanMemoryStorage), so check-then-charge is atomic in the event loop
        fb, spends = self.book.check(lines) if lines else (-1, [])
        if fb >= 0:
            return Outcome(-1, fb, [await self.windows.stats(w) for w in windows], spends)
        fw, stats = await self.windows.acquire(windows, amounts) if windows else (-1, [])
        if fw < 0 and lines:
            self.book.reserve(lines, estimate)
        return Outcome(fw, -1, stats, spends)

    async def settle(self, windows: list[Window], amounts: list[int], lines: list[BudgetLine], cost: float,
                     reserved: list[BudgetLine], release: float) -> list[float]:
        if windows:
            await self.windows.adjust(windows, amounts)
        if not lines and not reserved:
            return []
        return self.book.settle(lines, cost, release, reserved)

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


# ARGV: mode ('acquire' | 'settle'), n windows, b budgets, then 3 values per window and per budget.
# window i: KEYS previous, current; ARGV limit, expiry seconds, amount (settle: signed correction)
# budget j: KEYS spend, reserved; acquire ARGV: limit, estimate, reservation ttl
#                                  settle ARGV: cost, release, spend ttl
# returns {failed (0 or 1-based index: windows first, then budgets), per window: previous count,
#          previous ttl ms, current count, current ttl ms (before charging), per budget: spend}
SCRIPT = """
local mode, n, b = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local a, failed, out = 4, 0, {0}
local cur_keys, amounts, expiries = {}, {}, {}
for i = 1, n do
  local prev, cur = KEYS[2 * i - 1], KEYS[2 * i]
  local limit, expiry, amount = tonumber(ARGV[a]), tonumber(ARGV[a + 1]) * 1000, tonumber(ARGV[a + 2])
  a = a + 3
  local cttl = redis.call('pttl', cur)
  if cttl > 0 and cttl < expiry then
    redis.call('rename', cur, prev)
    redis.call('set', cur, 0, 'PX', cttl + expiry)
  end
  local pc = tonumber(redis.call('get', prev)) or 0
  local pttl = math.max(redis.call('pttl', prev), 0)
  local cc = tonumber(redis.call('get', cur)) or 0
  cttl = math.max(redis.call('pttl', cur), 0)
  if mode == 'acquire' and failed == 0 and math.floor(pc * pttl / expiry) + cc + math.max(amount, 1) > limit then
    failed = i
  end
  cur_keys[i], amounts[i], expiries[i] = cur, amount, expiry
  out[#out + 1] = pc
  out[#out + 1] = pttl
  out[#out + 1] = cc
  out[#out + 1] = cttl
end
local bk = {}
for j = 1, b do
  local sk, rk = KEYS[2 * n + 2 * j - 1], KEYS[2 * n + 2 * j]
  local x, y, ttl = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local spend = redis.call('get', sk) or '0'
  if mode == 'acquire' then
    local reserved = tonumber(redis.call('get', rk)) or 0
    if failed == 0 and tonumber(spend) + reserved >= tonumber(x) then failed = n + j end
    bk[j] = {rk, y, ttl}
  else
    if tonumber(x) ~= 0 then
      spend = redis.call('incrbyfloat', sk, x)
      redis.call('expire', sk, ttl)
    end
    if tonumber(y) > 0 and redis.call('exists', rk) == 1 then
      if tonumber(redis.call('incrbyfloat', rk, '-' .. y)) <= 1e-9 then redis.call('del', rk) end
    end
  end
  out[#out + 1] = spend
end
if mode == 'acquire' and failed > 0 then
  out[1] = failed
  return out
end
for i = 1, n do
  local cur, amt = cur_keys[i], amounts[i]
  if amt > 0 then
    if redis.call('exists', cur) == 1 then
      redis.call('incrby', cur, amt)
    else
      redis.call('set', cur, amt, 'PX', expiries[i] * 2)
    end
  elseif amt < 0 and redis.call('exists', cur) == 1 then
    if redis.call('incrby', cur, amt) < 0 then redis.call('set', cur, 0, 'KEEPTTL') end
  end
end
if mode == 'acquire' then
  for j = 1, b do
    if tonumber(bk[j][2]) > 0 then
      redis.call('incrbyfloat', bk[j][1], bk[j][2])
      redis.call('expire', bk[j][1], bk[j][3])
    end
  end
end
return out
"""


def _num(value: float) -> str:
    return repr(float(value))  # exponent notation is fine for INCRBYFLOAT


class RedisCounters:
    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self.script = redis.client.register_script(SCRIPT)
        self._limiter: SlidingWindowCounterRateLimiter | None = None

    async def _run(self, op: str, mode: str, windows: Any, amounts: list[int],
                   budgets: list[tuple[str, str, str, str, int]], quiet: bool) -> list[Any] | None:
        keys: list[str] = []
        args: list[Any] = [mode, len(windows), len(budgets)]
        for w, amt in zip(windows, amounts, strict=True):
            keys.extend(w.redis_keys())
            args.extend((w.limit, w.expiry, amt))
        for sk, rk, x, y, ttl in budgets:
            keys.extend((sk, rk))
            args.extend((x, y, ttl))

        async def call() -> list[Any]:
            return await self.script(keys=keys, args=args)  # type: ignore[no-any-return]

        if quiet:
            return await self.redis.quietly(op, call, None)
        return await self.redis.call(op, call, None)

    async def acquire(self, windows: tuple[Window, ...] | list[Window], amounts: list[int],
                      lines: list[BudgetLine], estimate: float) -> Outcome | None:
        budgets = [(ln.spend_key, ln.reserved_key, _num(ln.budget.usd), _num(estimate), RESERVATION_TTL)
                   for ln in lines]
        res = await self._run("admit", "acquire", windows, amounts, budgets, quiet=False)
        if res is None:
            return None
        failed = int(res[0])
        stats = []
        for i, (w, amt) in enumerate(zip(windows, amounts, strict=True)):
            pc, pttl, cc, cttl = (int(v) for v in res[1 + 4 * i: 5 + 4 * i])
            stats.append(Stats(pc, pttl / 1000, cc + (amt if failed == 0 else 0), cttl / 1000 or 2 * w.expiry))
        spends = [float(v) for v in res[1 + 4 * len(windows):]]
        n = len(windows)
        if failed == 0:
            return Outcome(-1, -1, stats, spends)
        return Outcome(failed - 1, -1, stats, spends) if failed <= n else Outcome(-1, failed - 1 - n, stats, spends)

    async def settle(self, windows: list[Window], amounts: list[int], lines: list[BudgetLine], cost: float,
                     reserved: list[BudgetLine], release: float) -> list[float] | None:
        pairs = _pairs(lines, reserved)
        budgets = [(ln.spend_key, (r or ln).reserved_key, _num(cost if ln is not r else 0.0),
                    _num(release if r is not None else 0.0), ln.ttl) for ln, r in pairs]
        res = await self._run("settle", "settle", windows, amounts, budgets, quiet=True)
        if res is None:
            return None
        return [float(v) for v in res[1 + 4 * len(windows): 1 + 4 * len(windows) + len(lines)]]

    async def seed(self, line: BudgetLine, spend: float) -> None:
        # NX: only when no replica has counted this period yet (fresh Redis, lost keys)
        await self.redis.quietly("budget_seed", lambda: self.redis.client.set(
            line.spend_key, _num(spend), nx=True, ex=line.ttl), None)

    async def spend(self, line: BudgetLine) -> float:
        raw = await self.redis.quietly("budget_get", lambda: self.redis.client.get(line.spend_key), None)
        return float(raw) if raw is not None else 0.0

    def limiter(self) -> SlidingWindowCounterRateLimiter:
        """limits' own view of the same windows (sharing our connection pool)."""
        if self._limiter is None:
            from limits.aio.storage import RedisStorage

            url = self.redis.url if "://" in self.redis.url else "redis://" + self.redis.url
            storage = RedisStorage("async+" + url, implementation="redispy",
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
