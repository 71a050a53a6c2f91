"""The dispatcher: claims due deliveries, attempts them off the request path, schedules retries.

At most `max_concurrency` attempts at once on this replica and `max_concurrency_per_subscription` per
subscription (a slow receiver cannot hold every slot). An attempt: POST the stored body with fresh
Standard Webhooks headers, `timeout` seconds, redirects not followed, the target's addresses checked
again (targets.py). Outcome:
  2xx                         delivered
  network error, timeout, 429, 5xx
                              retried after the next `retry_schedule` delay (jittered +-20%; a longer
                              `Retry-After` is honoured up to the longest delay), failed once it is spent
  410 Gone                    failed, and the subscription is disabled (audited)
  other 3xx/4xx               failed (final)
A subscription whose attempts have all failed for `disable_after` is disabled too (audited).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from proxy.config.webhooks import WebhooksConfig
from proxy.infra.asyncutil import wait_event
from proxy.ledger.rows import utcnow
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.webhooks import signing, targets
from proxy.webhooks.registry import Registry, Subscription
from proxy.webhooks.store import DELIVERED, FAILED, PENDING, WebhookStore

log = get_logger("gateway.webhooks")
USER_AGENT = "llm-gateway-webhooks/1"
# seconds a lease outlives the attempt's timeout: a held row waits at most one attempt's time for its slot
LEASE_MARGIN = 30.0


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Dispatcher:
    def __init__(self, cfg: WebhooksConfig, store: WebhookStore, registry: Registry,
                 disable: Callable[[Subscription, str], Awaitable[None]]) -> None:
        self.cfg = cfg
        self.store = store
        self.registry = registry
        self.disable = disable  # the service's: marks it inactive and audits why
        self.schedule = [float(s) for s in cfg.retry_schedule]
        self.wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], tuple[str, str]] = {}  # task -> (subscription, delivery)
        self._per_sub: Counter[str] = Counter()  # attempts under way per subscription
        # claimed (leased) rows waiting for a slot: claiming up to twice a subscription's concurrency lets a
        # finished attempt start the next at once, and one claim serves several deliveries
        self._held: dict[str, deque[dict[str, Any]]] = {}
        self._held_n = 0
        self._give_back: list[str] = []
        self._session: aiohttp.ClientSession | None = None
        self._last_pending = 0.0
        self.attempted = 0  # attempts made by this replica
        self._outcomes: list[dict[str, Any]] = []

    async def start(self) -> None:
        resolver = None if self.cfg.allow_private_targets else targets.GuardedResolver()
        connector = aiohttp.TCPConnector(limit=self.cfg.max_concurrency, resolver=resolver)
        self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT},
                                              timeout=aiohttp.ClientTimeout(total=self.cfg.timeout))

    async def close(self, grace: float = 5.0) -> None:
        """Let attempts under way finish for `grace` seconds; the rest keep their lease and are retried."""
        self._stop.set()
        self.wake.set()
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace)
        cut = list(self._inflight.items())
        for task, _ in cut:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        held = [row["id"] for rows in self._held.values() for row in rows]
        self._held.clear()
        with contextlib.suppress(Exception):  # cut short or not started: due again at once, on any replica
            await self.store.release([delivery for _, (_, delivery) in cut] + held + self._give_back)
        with contextlib.suppress(Exception):
            await self.write_outcomes()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ the loop
    async def run(self, refresh: Callable[[], Awaitable[None]]) -> None:
        next_refresh = time.monotonic() + self.cfg.refresh_interval
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_refresh:
                    await refresh()
                    next_refresh = time.monotonic() + self.cfg.refresh_interval
                await self.write_outcomes()
                if self.registry.any_active:
                    await self.claim()
                await self.publish_pending()
            except Exception as err:
                m.BACKEND_ERRORS.labels("db", "webhook_dispatch").inc()
                log.warning("webhook_dispatch_failed", error=f"{type(err).__name__}: {err}"[:300])
            await wait_event(self.wake, self.cfg.poll_interval)
            self.wake.clear()

    async def write_outcomes(self) -> None:
        if self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                await self.store.record_attempts(batch)
            except BaseException:
                self._outcomes[:0] = batch  # kept for the next round
                raise

    async def publish_pending(self, every: float = 5.0) -> None:
        if time.monotonic() - self._last_pending >= every:
            self._last_pending = time.monotonic()
            m.WEBHOOK_PENDING.set(await self.store.pending_count())

    async def claim(self) -> None:
        if self._give_back:
            ids, self._give_back = self._give_back, []
            await self.store.release(ids)
        if self._session is None:
            return
        cap, window = self.cfg.max_concurrency, 2 * self.cfg.max_concurrency_per_subscription
        holding = {sid: self._per_sub[sid] + len(self._held.get(sid, ())) for sid in self.registry.subs}
        full = [sid for sid, n in holding.items() if n >= window]
        room = sum(window - n for sid, n in holding.items() if n < window and self.registry.subs[sid].active)
        limit = min(room, 2 * cap - len(self._inflight) - self._held_n)
        if limit <= 0:
            return
        rows = await self.store.claim(limit, self.cfg.timeout + LEASE_MARGIN, full)
        for row in rows:
            sid = row["subscription_id"]
            if self._stop.is_set() or sid not in self.registry.subs:  # closing, or not known here yet
                self._give_back.append(row["id"])
                continue
            self._held.setdefault(sid, deque()).append(row)
            self._held_n += 1
        self._start_ready()
        if self._give_back:  # also when closing: close() may have released what it knew before this claim ended
            ids, self._give_back = self._give_back, []
            await self.store.release(ids)

    def _start_ready(self) -> None:
        """Start held deliveries while their subscription and the replica have free slots."""
        per, cap = self.cfg.max_concurrency_per_subscription, self.cfg.max_concurrency
        for sid in list(self._held):
            rows = self._held[sid]
            sub = self.registry.subs.get(sid)
            if sub is None or not sub.active:  # deleted or disabled meanwhile
                self._give_back += [r["id"] for r in rows]
                self._held_n -= len(rows)
                rows.clear()
            while rows and self._per_sub[sid] < per and len(self._inflight) < cap and not self._stop.is_set():
                row = rows.popleft()
                self._held_n -= 1
                self._per_sub[sid] += 1
                task = asyncio.create_task(self._attempt(row, sub), name="webhook-delivery")  # type: ignore[arg-type]
                self._inflight[task] = (sid, row["id"])
                task.add_done_callback(self._done)
            if not rows:
                del self._held[sid]

    def _done(self, task: asyncio.Task[None]) -> None:
        sub_id, _ = self._inflight.pop(task, (None, None))
        if sub_id is not None:
            self._per_sub[sub_id] -= 1
            if self._per_sub[sub_id] <= 0:
                del self._per_sub[sub_id]
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("webhook_attempt_crashed", error=f"{type(err).__name__}: {err}"[:300])
        self._start_ready()
        # claim more (and write outcomes) once a subscription's held rows run low, not after every attempt
        if sub_id is None or len(self._held.get(sub_id, ())) < self.cfg.max_concurrency_per_subscription // 2 + 1:
            self.wake.set()

    # ------------------------------------------------------------ one attempt
    async def _attempt(self, row: dict[str, Any], sub: Subscription) -> None:
        assert self._session is not None
        body = row["body"].encode()
        ts = int(time.time())
        status: int | None = None
        wait_hint: float | None = None
        error: str | None = None
        t0 = time.perf_counter()
        try:
            if not self.cfg.allow_private_targets and (why := targets.literal_refusal(sub.url)) is not None:
                raise targets.UnsafeTarget(why)
            headers = {"Content-Type": "application/json", **signing.headers(sub.secrets, row["event_id"], ts, body)}
            async with self._session.post(sub.url, data=body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                wait_hint = retry_after(resp.headers.get("Retry-After"))
                await resp.content.read(65536)  # a little of the answer; the rest is discarded
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            error = targets.describe(err)
        m.WEBHOOK_DELIVERY_SECONDS.observe(time.perf_counter() - t0)
        await self._outcome(row, sub, status, error, wait_hint)

    async def _outcome(self, row: dict[str, Any], sub: Subscription, status: int | None, error: str | None,
                       wait_hint: float | None) -> None:
        now = utcnow()
        values: dict[str, Any] = {"status": FAILED, "step": row["step"], "next_attempt_at": None, "delivered_at": None,
                                  "last_status": status, "last_error": error}
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
            values.update(status=DELIVERED, delivered_at=now, last_error=None)
        elif status is None or status == 429 or status >= 500:
            step = row["step"]
            if step < len(self.schedule):
                outcome = "retry"
                delay = self.schedule[step] * random.uniform(0.8, 1.2)
                if wait_hint is not None:
                    delay = max(delay, min(wait_hint, max(self.schedule)))
                values.update(status=PENDING, step=step + 1, next_attempt_at=now + timedelta(seconds=delay))
            else:
                outcome = "failed"
        else:
            outcome = "failed"
            values["last_error"] = error or ("redirect not followed" if status < 400 else f"HTTP {status}")
        m.WEBHOOK_DELIVERIES.labels(row["event_type"], outcome).inc()
        self.attempted += 1
        # written by the loop, many in one statement; until then the row keeps its lease (a crash: re-attempted)
        self._outcomes.append({"b_id": row["id"], **{f"b_{k}": v for k, v in values.items()}})
        if outcome == "delivered":
            if sub.failing_since is not None:
                await self.store.update_subscription(sub.id, {"failing_since": None})
                self.registry.update(replace(sub, failing_since=None))
            return
        log.info("webhook_attempt_failed", subscription=sub.id, delivery=row["id"], event_type=row["event_type"],
                 status=status, error=error, outcome=outcome)
        if status == 410:
            await self.disable(sub, "the receiver answered 410 Gone")
        elif sub.failing_since is None:
            await self.store.update_subscription(sub.id, {"failing_since": now})
            self.registry.update(replace(sub, failing_since=now))
        elif _seconds(now, sub.failing_since) >= self.cfg.disable_after:
            await self.disable(sub, f"every attempt failed for {self.cfg.disable_after:.0f} s")


def _seconds(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds()
