"""Wires keys, quotas, budgets, pricing and the usage ledger into a Gateway (`install`, from build_gateway).

* pricing: `Meter.price` prices every call from the PriceTable, `Meter.unpriced` counts those it cannot;
* the ledger: a `Meter.on_finish` hook queues one UsageRow per call into the LedgerWriter (never awaited
  on the request path); `LedgerService` migrates the database at startup and flushes on shutdown;
* DB-backed virtual keys: the Authenticator's `lookup` is the KeyStore (in-process cache + invalidation);
* admission: quotas + budgets, settled by another finish hook; the per-IP limit runs before auth.
The admin API and /v1/usage find these objects in `gw.extras`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from . import metrics as m
from . import redis_client
from .admission import AdmissionStage
from .budgets import EventBus
from .counters import Counters, LocalCounters
from .keystore import KeyStore
from .ledger import LedgerStore, LedgerWriter, UsageRow
from .logs import get_logger
from .metering import FinishHook
from .pricing import PriceTable
from .redis_counters import RedisCounters

if TYPE_CHECKING:
    from .context import RequestContext
    from .state import Gateway

log = get_logger("gateway.ledger")


class LedgerService:
    """Database lifecycle: connect + migrate at start (retrying in the background while the database is
    unreachable: the gateway serves meanwhile, rows wait in the writer's queue), flush at shutdown."""

    def __init__(self, store: LedgerStore, writer: LedgerWriter, *, retry_interval: float = 5.0) -> None:
        self.store = store
        self.writer = writer
        self.retry_interval = retry_interval
        self.ready = False
        self._retry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not await self._connect():
            self._retry = asyncio.get_running_loop().create_task(self._reconnect(), name="ledger-connect")
        await self.writer.start()

    async def _connect(self) -> bool:
        try:
            await asyncio.wait_for(self.store.migrate(), 30)
        except Exception as err:
            m.BACKEND_ERRORS.labels("db", "migrate").inc()
            m.BACKEND_UP.labels("db").set(0)
            log.error("ledger_db_unavailable", error=f"{type(err).__name__}: {err}")
            with contextlib.suppress(Exception):
                await self.store.close()  # a half-made engine would make later calls fail oddly
            return False
        self.ready = True
        m.BACKEND_UP.labels("db").set(1)
        return True

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            if await self._connect():
                return

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if not self.ready:  # never connected: a short last try, not the full drain timeout
            self.writer.close_timeout = min(self.writer.close_timeout, 2.0)
        await self.writer.close()  # drains the queue (bounded by its close_timeout)
        await self.store.close()


def usage_row(ctx: RequestContext) -> UsageRow:
    key = ctx.key
    u = ctx.usage
    hit = ctx.cache_status == "hit"
    return UsageRow(
        request_id=ctx.request_id,
        key_id=key.id if key else None, key_name=key.name if key else None,
        user=key.user if key else None, team=key.team if key else None,
        alias=ctx.served_alias or ctx.alias, provider=ctx.provider, upstream_model=ctx.upstream_model,
        prompt_tokens=u.prompt_tokens if u else 0, completion_tokens=u.completion_tokens if u else 0,
        cached_tokens=u.cached_tokens if u else 0,
        cost_usd=ctx.cost_usd, saved_usd=ctx.saved_usd,
        latency_ms=round(ctx.elapsed * 1000, 3), ttft_ms=round(ctx.ttft * 1000, 3) if ctx.ttft is not None else None,
        status=ctx.status, error_type=ctx.error_type, cache_hit=hit, stream=ctx.stream,
        fallback=ctx.fallback.split("->", 1)[0] if ctx.fallback else None,
        attempts=len(ctx.attempts) or (0 if hit else 1),
    )


def ledger_hook(writer: LedgerWriter) -> FinishHook:
    def record(ctx: RequestContext) -> None:
        # calls without a key (401s) are not usage: counting them would let anyone fill the ledger
        if ctx.key is not None:
            writer.submit(usage_row(ctx))

    return record


def install(gw: Gateway) -> None:
    cfg = gw.cfg
    prices = PriceTable.from_config(cfg)
    meter = gw.pipeline.meter
    meter.price = prices.price
    meter.unpriced = prices.count_unpriced
    redis = redis_client.shared(gw)

    store = LedgerStore.from_config(cfg.database)
    writer = LedgerWriter.from_config(store, cfg.database)
    ledger = LedgerService(store, writer)
    # no readiness check on the database: config keys and the proxying keep working without it, and
    # taking every replica out of rotation would turn a degraded ledger into an outage
    gw.services.append(ledger)

    keystore = KeyStore(store, redis)
    gw.pipeline.auth.lookup = keystore.lookup
    gw.services.append(keystore)

    events = EventBus()
    counters: Counters = RedisCounters(redis) if redis is not None else LocalCounters()
    admission = AdmissionStage(cfg, prices, counters, store=store, events=events, recorder=gw.recorder)
    gw.pipeline.admission = admission
    gw.services.append(admission)  # after the ledger and Redis: closes first, settling what is owed
    meter.on_finish(admission.on_finish)
    meter.on_finish(ledger_hook(writer))
    if cfg.ip_limits.rpm:
        gw.pipeline.pre_auth.append(admission.admit_ip)

    gw.extras.update(prices=prices, ledger_store=store, ledger_writer=writer, ledger=ledger, keystore=keystore,
                     admission=admission, events=events)
