"""Breaker state shared across replicas through Redis, without Redis on the request path.

pybreaker ships `CircuitRedisStorage`, but it is synchronous: every state read would be a blocking
Redis round trip inside the event loop. Instead each breaker keeps its state in memory
(`LocalStorage`) and this service mirrors it in the background:

* every `sync_interval` (and at once when a breaker opens or closes) one pipelined round trip
  1. publishes local transitions with a compare-and-set script — last writer wins by `changed_at`,
     so a stale replica cannot overwrite a newer decision;
  2. adds local failure counts (`HINCRBY failures`) or resets them, so the failure threshold counts
     failures seen by all replicas together;
  3. reads every breaker's hash back and adopts transitions newer than the local one.
* per breaker one hash `<prefix><provider>/<model>` {state, opened_at, changed_at, failures},
  expiring after a day of silence.
* half-open is not published: each replica sends its own single probe once the reset timeout has
  passed, and publishes the resulting open / closed.

If Redis is unreachable, breakers keep working per replica (the shared client's fail-open policy);
unsent changes are kept and published once it is back.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from proxy.infra.asyncutil import cancel_and_wait, wait_event
from proxy.observability.logs import get_logger
from proxy.resilience.breakers import CLOSED, OPEN, Breaker

if TYPE_CHECKING:
    from proxy.infra.redis_client import RedisClient

log = get_logger("gateway.breaker")

TTL_SECONDS = 86400
# ARGV: state, opened_at, changed_at, ttl
PUBLISH = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'changed_at') or '0')
if tonumber(ARGV[3]) > cur then
  redis.call('HSET', KEYS[1], 'state', ARGV[1], 'opened_at', ARGV[2], 'changed_at', ARGV[3])
  if ARGV[1] == 'closed' then redis.call('HSET', KEYS[1], 'failures', 0) end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class BreakerSync:
    """A gateway service: start() launches the mirror task, close() stops it."""

    def __init__(self, breakers: list[Breaker], redis: RedisClient, prefix: str, interval: float) -> None:
        self.breakers = breakers
        self.redis = redis
        self.prefix = prefix
        self.interval = max(0.05, interval)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        for b in breakers:
            b.storage.on_change = self._wake.set

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="breaker-sync")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except Exception:  # a bug here must not end the mirror
                log.exception("breaker_sync_failed")
            await wait_event(self._wake, self.interval)
            self._wake.clear()

    async def sync_once(self) -> bool:
        """One round trip; False when Redis was unavailable (local state then stands)."""
        sent: list[tuple[Breaker, bool, int, bool]] = []
        pipe = self.redis.client.pipeline(transaction=False)
        for b in self.breakers:
            s = b.storage
            key = self.prefix + b.name
            dirty, delta, reset = s.dirty, s.pending_failures, s.reset_pending
            if dirty:
                pipe.eval(PUBLISH, 1, key, s._state, repr(s.opened_ts), repr(s.changed_at), TTL_SECONDS)
            if reset:
                pipe.hset(key, "failures", 0)
            elif delta:
                pipe.hincrby(key, "failures", delta)
            pipe.hgetall(key)
            s.dirty, s.pending_failures, s.reset_pending = False, 0, False
            sent.append((b, dirty, delta, reset))
        if not sent:
            return True
        results: list[Any] | None = await self.redis.quietly("breaker_sync", pipe.execute, None)
        if results is None:
            for b, dirty, delta, reset in sent:  # keep what was not published for the next round
                s = b.storage
                s.dirty = s.dirty or dirty
                if not s.reset_pending:
                    s.pending_failures += delta
                s.reset_pending = s.reset_pending or reset
            return False
        i = 0
        for b, dirty, delta, reset in sent:
            i += int(dirty) + int(reset or bool(delta))
            self._merge(b, results[i])
            i += 1
        return True

    @staticmethod
    def _merge(b: Breaker, remote: dict[bytes, bytes]) -> None:
        if not remote:
            return
        s = b.storage
        state = remote.get(b"state", b"").decode()
        changed_at = float(remote.get(b"changed_at") or 0)
        if state in (OPEN, CLOSED) and changed_at > s.changed_at and state != s._state:
            s.adopt(state, float(remote.get(b"opened_at") or 0), changed_at)
            b.sync_state_object()
            log.info("breaker_adopted", provider=b.provider, model=b.model, state=state)
        if s._state == CLOSED and not s.reset_pending:
            # the cluster-wide count, plus what failed here since the pipeline was sent
            s._failures = int(remote.get(b"failures") or 0) + s.pending_failures
