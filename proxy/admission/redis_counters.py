"""Counters in Redis, shared by every replica (`redis: {url}`): `RedisCounters`.

All of a call's rate windows and budgets go in one atomic Lua call (`SCRIPT`), so concurrent replicas
cannot both take the last slot; and the calls of one event-loop turn share one EVALSHA, so a busy replica
pays far less than a round trip per request. The window half of the script is limits' sliding-window-
counter Lua (acquire_sliding_window.lua) generalised to several windows, on the same keys, so `limits`'
own RedisStorage reads what it writes (window stats for /v1/usage). Settlements are summed per counter
in-process and sent every `settle_interval`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import ResponseError

from proxy.admission.budgets import RESERVATION_TTL, BudgetLine
from proxy.admission.counters import OnSpend, Outcome, pairs
from proxy.admission.quotas import Stats, Window, fmt_duration
from proxy.infra.redis_client import REDIS_ERRORS, RedisClient
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

log = get_logger("gateway.counters")


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
    future: asyncio.Future[Outcome | bool | None] | None = None  # acquisitions
    done: Callable[[list[float]], None] | None = None  # settlements: the spends, in budget order
    headers: dict[str, str] | None = None  # admissions: where the rate-limit headers go on success


def _admitted(entry: _Entry, parts: list[bytes], headers: dict[str, str]) -> None:
    """Rate-limit headers of an admitted call straight from the script's answer (no Stats objects)."""
    req = tok = None
    req_rem = tok_rem = 0
    req_reset = tok_reset = 0.0
    for i, w in enumerate(entry.windows):
        pc, pttl, cc, cttl = map(int, parts[1 + i].split(b","))
        a = entry.amounts[i]
        e = w.expiry
        left = pttl / 1000 if pc else 0.0
        rem = w.limit - ((pc * pttl) // (e * 1000) if pc else 0) - cc - (a if a > 0 else 0)
        # limits' reset rule (Stats.reset_in): when the count next drops
        cur = (cttl / 1000 - e if cttl else e) if cc + a > 0 else math.inf  # until the window ends
        reset = min(left % (e / pc) if pc else math.inf, cur)
        reset = 0.0 if reset == math.inf else reset
        if w.kind == "requests":
            if req is None or rem < req_rem:
                req, req_rem, req_reset = w, rem, reset
        elif tok is None or rem < tok_rem:
            tok, tok_rem, tok_reset = w, rem, reset
    if req is not None:
        headers["x-ratelimit-limit-requests"] = req.limit_text
        headers["x-ratelimit-remaining-requests"] = str(req_rem if req_rem > 0 else 0)
        headers["x-ratelimit-reset-requests"] = fmt_duration(req_reset)
    if tok is not None:
        headers["x-ratelimit-limit-tokens"] = tok.limit_text
        headers["x-ratelimit-remaining-tokens"] = str(tok_rem if tok_rem > 0 else 0)
        headers["x-ratelimit-reset-tokens"] = fmt_duration(tok_reset)


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
            if not self.redis.up:
                self.redis.recovered()
            for e, line in zip(batch, raw.split(b"\n"), strict=True):
                if e.headers is not None and line[:2] == b"0;":  # admitted: the common case, made cheap
                    _admitted(e, line.split(b";"), e.headers)
                    if e.future is not None and not e.future.done():
                        e.future.set_result(True)
                    continue
                outcome, spends = _parse(e, line)
                if e.future is not None:
                    if not e.future.done():
                        e.future.set_result(outcome)
                elif e.done is not None:
                    try:
                        e.done(spends)
                    except Exception:  # a hook's bug must not lose the rest of the batch
                        log.exception("settle_callback_failed")
        except ResponseError as err:  # the script itself failed: a bug, not Redis going away
            m.BACKEND_ERRORS.labels("redis", "script").inc()
            log.error("redis_script_failed", error=str(err), entries=len(batch))
        except REDIS_ERRORS as err:
            # an admission batch is counted per request below, as the failure mode answers each
            self.redis.failed("admit" if acquiring else "settle", err, count=not acquiring)
        except Exception:
            log.exception("redis_batch_failed")
        finally:
            # whatever happened, no request may wait forever: unresolved ones take the failure mode
            for e in batch:
                if e.future is not None and not e.future.done():
                    if self.redis.fail_closed:
                        e.future.set_exception(self.redis.unavailable())
                    else:
                        m.BACKEND_ERRORS.labels("redis", "admit").inc()
                        e.future.set_result(None)

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
    async def admit(self, windows: Sequence[Window], amounts: list[int], lines: list[BudgetLine], estimate: float,
                    headers: dict[str, str]) -> Outcome | bool | None:
        """Admission's path: True (charged, headers written), an Outcome when something is full, None when
        Redis is down and the failure mode is fail_open."""
        return await self._acquire(windows, amounts, lines, estimate, headers)

    async def acquire(self, windows: Sequence[Window], amounts: list[int], lines: list[BudgetLine],
                      estimate: float) -> Outcome | None:
        return await self._acquire(windows, amounts, lines, estimate, None)  # type: ignore[return-value]

    async def _acquire(self, windows: Sequence[Window], amounts: list[int], lines: list[BudgetLine],
                       estimate: float, headers: dict[str, str] | None) -> Outcome | bool | None:
        if self.redis.skip:  # down after a timeout: the failure mode decides at once, no queueing behind it
            return await self.redis.call("admit", _never, None)
        spec = [f"a{US}{len(windows)}{US}{len(lines)}"]
        spec += [f"{w.redis_spec}{a}" for w, a in zip(windows, amounts, strict=True)]
        spec += [f"{ln.spend_key}{US}{ln.reserved_key}{US}{ln.budget.usd!r}{US}{estimate!r}{US}{RESERVATION_TTL}"
                 for ln in lines]
        fut: asyncio.Future[Outcome | bool | None] = asyncio.get_running_loop().create_future()
        self._submit(_Entry(US.join(spec), windows, amounts, len(lines), future=fut, headers=headers))
        return await fut

    def settle(self, windows: list[Window], amounts: list[int], lines: list[BudgetLine], cost: float,
               reserved: list[BudgetLine], release: float) -> None:
        """Add to this replica's pending corrections; they go out summed per counter every
        `settle_interval`: under load thousands of settlements become a few increments. Reservations are
        held until then, so a late settlement can only make admission stricter, never looser."""
        if self.redis.skip:
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
