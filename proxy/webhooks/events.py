"""The events producer: what happened in the gateway -> a bounded queue -> batched durable deliveries.

`emit()` never blocks or touches the database: it appends to a deque (full: the event is dropped and
counted in gateway_webhook_dropped_events_total). A background task writes what is queued every
`flush_interval`: each event becomes one pending delivery per matching subscription, in one insert, and
the dispatcher is woken. Rows leave the queue only once written, so a database outage delays events
instead of losing them; close() writes what is left.

The sources: the metering finish hook (`invocation.*`, sampled, only while a subscription asks for
them), the in-process EventBus (`budget.*`, `key.*` from the admin routes), the breakers' transition
callback (`breaker.*`) and the admin test route (`webhook.test`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy.core.context import RequestContext
from proxy.infra.asyncutil import wait_event
from proxy.ledger.rows import utcnow
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.webhooks.registry import Event, Registry
from proxy.webhooks.store import WebhookStore

log = get_logger("gateway.webhooks")
BUS_TYPES = frozenset({"budget.threshold", "budget.exceeded", "key.created", "key.rotated", "key.revoked"})


def new_event_id() -> str:
    return "msg_" + uuid.uuid4().hex


def stable_event_id(*parts: object) -> str:
    """The same id for the same occurrence on every replica (a budget crossing): delivered once."""
    return "msg_" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:32]


def body(event: Event) -> str:
    ts = datetime.fromtimestamp(event.timestamp, UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"type": event.type, "timestamp": ts, "data": event.data}).decode()


def invocation_event(ctx: RequestContext) -> Event:
    key = ctx.key
    assert key is not None
    u = ctx.usage
    failed = ctx.status >= 400
    data: dict[str, Any] = {
        "request_id": ctx.request_id, "key": {"id": key.id, "name": key.name}, "user": key.user, "team": key.team,
        "alias": ctx.served_alias or ctx.alias, "provider": ctx.provider or None, "model": ctx.upstream_model or None,
        "stream": ctx.stream, "status": ctx.status,
        "tokens": {"prompt": u.prompt_tokens if u else 0, "completion": u.completion_tokens if u else 0,
                   "cached": u.cached_tokens if u else 0},
        "cost_usd": ctx.cost_usd, "latency_ms": round(ctx.elapsed * 1000, 3), "cache_hit": ctx.cache_status == "hit",
        "attempts": len(ctx.attempts), "fallback": ctx.fallback,
    }
    if failed:
        data["error_type"] = ctx.error_type
    return Event("invocation.failed" if failed else "invocation.completed", data, time.time(), (key.id, key.name),
                 key.team)


def bus_event(e: dict[str, Any]) -> Event | None:
    """An EventBus dict (admission's budget alerts, the admin key routes) as a webhook event."""
    kind = e.get("type")
    if kind not in BUS_TYPES:
        return None
    data = {k: v for k, v in e.items() if k not in ("type", "at")}
    if kind.startswith("budget."):
        scope, ident, name = data.get("scope"), data.get("id"), data.get("name")
        keys = (str(ident), str(name)) if scope == "key" else ()
        team = str(name) if scope == "team" else None
        eid = stable_event_id(kind, scope, ident, data.get("period_start"), data.get("threshold"))
        return Event(kind, data, time.time(), keys, team, eid)
    key = data.get("key") or {}
    return Event(kind, data, time.time(), tuple(str(key[k]) for k in ("id", "name") if key.get(k)),
                 key.get("team"))


class EventProducer:
    def __init__(self, store: WebhookStore, registry: Registry, *, sample_rate: float = 1.0,
                 queue_max: int = 10_000, batch_size: int = 500, flush_interval: float = 0.2,
                 on_written: Callable[[], None] | None = None) -> None:
        self.store = store
        self.registry = registry
        self.sample_rate = sample_rate
        self.queue_max = queue_max
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.on_written = on_written
        self.close_timeout = 5.0
        self.dropped = 0
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    @property
    def depth(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------ sources (never block)
    def emit(self, event: Event) -> bool:
        if len(self._queue) >= self.queue_max:
            self.dropped += 1
            m.WEBHOOK_DROPPED.inc()
            return False
        self._queue.append(event)
        if len(self._queue) >= self.batch_size:
            self._wake.set()
        return True

    def on_finish(self, ctx: RequestContext) -> None:
        """The metering hook: two attribute reads per request while nobody subscribes to invocations."""
        reg = self.registry
        if not (reg.wants_completed or reg.wants_failed) or ctx.key is None:
            return
        if not (reg.wants_failed if ctx.status >= 400 else reg.wants_completed):
            return
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        self.emit(invocation_event(ctx))

    def on_bus(self, e: dict[str, Any]) -> None:
        if (event := bus_event(e)) is not None:
            self.emit(event)

    def breaker_transition(self, provider: str, model: str, state: str, info: dict[str, Any]) -> None:
        kind = {"open": "breaker.opened", "closed": "breaker.closed"}.get(state)
        if kind is not None:
            data = {"deployment": f"{provider}/{model}", "provider": provider, "model": model, **info}
            self.emit(Event(kind, data, time.time()))

    # ------------------------------------------------------------ the durable writer
    async def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="webhook-events")

    async def close(self) -> None:
        """Write what is queued, for at most `close_timeout` seconds; what is left then is lost and counted."""
        self._stop.set()
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout):
                    await task
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._queue:
            log.error("webhook_events_lost_at_shutdown", events=len(self._queue))
            m.WEBHOOK_DROPPED.inc(len(self._queue))
            self._queue.clear()

    async def _run(self) -> None:
        while True:
            await wait_event(self._wake, self.flush_interval)
            self._wake.clear()
            try:
                await self.flush()
                self._failures = 0
            except Exception as err:
                self._failures += 1
                m.BACKEND_ERRORS.labels("db", "webhook_events").inc()
                delay = min(30.0, 0.5 * 2 ** (self._failures - 1)) * random.uniform(0.8, 1.2)
                log.warning("webhook_events_write_failed", error=f"{type(err).__name__}: {err}"[:300],
                            queued=len(self._queue), retry_in_s=round(delay, 2))
                if self._stop.is_set():
                    await asyncio.sleep(min(delay, 1.0))
                else:
                    await wait_event(self._stop, delay)
                continue
            if self._stop.is_set() and not self._queue:
                return

    async def flush(self) -> None:
        """Write everything queued now (batch by batch; an error leaves the rest queued)."""
        if not self.registry.loaded:
            return
        async with self._lock:
            while self._queue:
                n = min(self.batch_size, len(self._queue))
                batch = [self._queue[i] for i in range(n)]
                now = utcnow()
                rows = []
                for event in batch:
                    subs = self.registry.matching(event)
                    if subs:
                        text, eid = body(event), event.id or new_event_id()
                        rows += [self.store.delivery_row(eid, s.id, event.type, text, now) for s in subs]
                await self.store.insert_deliveries(rows)
                for _ in range(n):
                    self._queue.popleft()
                if rows and self.on_written is not None:
                    self.on_written()
