"""WebhookService: the webhooks' lifecycle as a Gateway service, and what the admin routes call.

start(): the producer's queue accepts events at once; once the ledger database is reachable the
gateway.yaml subscriptions are written to it, the registry is loaded and the dispatcher resumes whatever
is pending (deliveries left by a restart or a crash included). close(): the queued events are written
first, then attempts under way get a few seconds to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from proxy.config.webhooks import WebhooksConfig, subscription_config_id
from proxy.ledger import LedgerStore
from proxy.ledger.rows import utcnow
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.webhooks.dispatcher import Dispatcher
from proxy.webhooks.events import EventProducer, body, new_event_id
from proxy.webhooks.registry import Event, Registry, Subscription
from proxy.webhooks.store import WebhookStore, public

log = get_logger("gateway.webhooks")


class WebhookService:
    def __init__(self, cfg: WebhooksConfig, ledger: LedgerStore, ready: Callable[[], bool]) -> None:
        self.cfg = cfg
        self.ready = ready  # the ledger database is connected and migrated
        self.store = WebhookStore(ledger)
        self.registry = Registry()
        self.declared: list[tuple[str, dict[str, Any]]] = []
        self.config_secrets: dict[str, str] = {}
        for i, s in enumerate(cfg.subscriptions):
            sub_id = subscription_config_id(i, s)
            self.declared.append((sub_id, s.model_dump(mode="json", include={"url", "events", "active",
                                                                          "description", "filter"})))
            assert s.secret is not None  # validated
            self.config_secrets[sub_id] = s.secret
        self.producer = EventProducer(self.store, self.registry, sample_rate=cfg.invocation_sample_rate,
                                      queue_max=cfg.queue_max, on_written=self.wake)
        self.dispatcher = Dispatcher(cfg, self.store, self.registry, self._disable)
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.producer.start()
        await self.dispatcher.start()
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def _run(self) -> None:
        failures = 0
        while True:
            if self.ready():
                try:
                    await self.store.sync_config(self.declared)
                    await self.refresh()
                    break
                except Exception as err:
                    failures += 1
                    m.BACKEND_ERRORS.labels("db", "webhook_load").inc()
                    log.warning("webhook_load_failed", error=f"{type(err).__name__}: {err}"[:300])
            await asyncio.sleep(min(5.0, 0.2 * 2 ** failures) * random.uniform(0.8, 1.2))
        self.wake()
        await self.dispatcher.run(self.refresh)

    async def close(self) -> None:
        await self.producer.close()
        await self.dispatcher.close()
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await asyncio.shield(task)
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------ what the admin routes and sources use
    async def refresh(self) -> None:
        self.registry.load(await self.store.all_subscriptions(), self.config_secrets)

    async def changed(self) -> None:
        """A subscription changed here: every replica's producer and dispatcher see it within
        `refresh_interval`, this one at once."""
        await self.refresh()
        self.wake()

    def wake(self) -> None:
        self.dispatcher.wake.set()

    def emit(self, event: Event) -> bool:
        return self.producer.emit(event)

    async def send_test(self, sub_id: str) -> dict[str, Any]:
        """A `webhook.test` delivery to this subscription only, written now and attempted at once."""
        event = Event("webhook.test", {"subscription_id": sub_id, "message": "a test event from the gateway"},
                      time.time())
        row = self.store.delivery_row(new_event_id(), sub_id, event.type, body(event), utcnow())
        await self.store.insert_deliveries([row])
        self.wake()
        return row

    async def _disable(self, sub: Subscription, reason: str) -> None:
        current = self.registry.subs.get(sub.id, sub)
        if not current.active:
            return  # another attempt of the same subscription got here first
        self.registry.update(replace(current, active=False))
        before = await self.store.get_subscription(sub.id)
        after = await self.store.update_subscription(sub.id, {"active": False, "disabled_reason": reason})
        log.warning("webhook_subscription_disabled", subscription=sub.id, reason=reason)
        try:
            await self.store.ledger.add_audit("gateway", "webhook.disable", sub.id,
                                              before=public(before) if before else None,
                                              after=public(after) if after else None)
        except Exception as err:
            m.BACKEND_ERRORS.labels("db", "audit").inc()
            log.error("audit_write_failed", action="webhook.disable", target=sub.id,
                      error=f"{type(err).__name__}: {err}"[:300])
        await self.refresh()
