"""The ledger database's lifecycle as a Gateway service: connect and migrate, flush on shutdown."""

from __future__ import annotations

import asyncio
import contextlib

from proxy.infra.asyncutil import cancel_and_wait
from proxy.ledger.store import LedgerStore
from proxy.ledger.writer import LedgerWriter
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

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
        await cancel_and_wait(self._retry)
        if not self.ready:  # never connected: a short last try, not the full drain timeout
            self.writer.close_timeout = min(self.writer.close_timeout, 2.0)
        await self.writer.close()  # drains the queue (bounded by its close_timeout)
        await self.store.close()
