"""When and from which client IP each key was last used (`last_used_at`, `last_used_ip` in GET /admin/keys).

Cheap on the request path: `seen(key_id, ip)` (the Authenticator's `on_success`) is a dict lookup and a
clock read; at most once a minute per key it also puts (time, ip) in a bounded pending map. A background
task writes the pending map to the database every `flush_interval` (one upsert for all keys), and once
more at shutdown. Last use is advisory: when the database is down the batch is dropped (logged, counted
in gateway_backend_errors_total) and the next use a minute later writes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

Write = Callable[[Mapping[str, tuple[datetime, str | None]]], Awaitable[None]]
log = get_logger("gateway.lastused")


class LastUsed:
    def __init__(self, write: Write, *, every: float = 60.0, flush_interval: float = 2.0,
                 max_pending: int = 10_000, max_keys: int = 100_000,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.write = write
        self.every = every
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.max_keys = max_keys
        self.ready = ready
        self._written: dict[str, float] = {}  # key id -> monotonic time of its last recorded use
        self.pending: dict[str, tuple[datetime, str | None]] = {}
        self._task: asyncio.Task[None] | None = None

    def seen(self, key_id: str, ip: str) -> None:
        now = time.monotonic()
        last = self._written.get(key_id)
        if last is not None and now - last < self.every:
            return
        if len(self.pending) >= self.max_pending:
            return  # the flusher is behind (database slow): this use is recorded on a later one
        if len(self._written) >= self.max_keys:
            self._written.clear()  # bounded memo; forgetting only costs one extra write per key
        self._written[key_id] = now
        self.pending[key_id] = (datetime.now(UTC), ip or None)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="key-last-used")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def flush(self) -> None:
        if not self.pending or not self.ready():
            return
        batch, self.pending = self.pending, {}
        try:
            await self.write(batch)
        except Exception as err:
            m.BACKEND_ERRORS.labels("db", "key_last_used").inc()
            log.warning("key_last_used_write_failed", keys=len(batch), error=type(err).__name__)
