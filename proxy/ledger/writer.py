"""LedgerWriter: takes usage rows off the request path and writes them in batches.

`submit()` only appends to a bounded deque, so a slow or unreachable database never delays a reply.
While the database is down, rows wait (oldest kept, the newest beyond `queue_max` dropped and counted)
and the writer retries with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from proxy.infra.asyncutil import cancel_and_wait, wait_event
from proxy.ledger.rows import UsageRow
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

if TYPE_CHECKING:  # annotations only: the config layer sits above this one
    from proxy.config import DatabaseConfig

# the database is unreachable or busy: keep the rows and retry
_TRANSIENT = (OSError, TimeoutError, sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError,
              sa.exc.DisconnectionError)
# caused by the rows themselves (bad value, constraint): retrying the same batch cannot help
_DATA_ERRORS = (sa.exc.DataError, sa.exc.IntegrityError, TypeError, ValueError, ArithmeticError)


class UsageSink(Protocol):
    """What the writer needs of a store. An optional `async check() -> str | None` (LedgerStore has
    one) helps tell a row the database refuses from a database that is down."""

    async def insert_usage(self, rows: list[UsageRow]) -> None: ...


class LedgerWriter:
    def __init__(self, store: UsageSink, batch_size: int = 200, flush_interval: float = 1.0,
                 queue_max: int = 100_000, *, close_timeout: float = 10.0, retry_backoff: float = 0.5,
                 retry_backoff_max: float = 30.0) -> None:
        self.store = store
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        self.queue_max = max(1, queue_max)
        self.close_timeout = close_timeout
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.dropped = 0
        self.written = 0
        self._queue: deque[UsageRow] = deque()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # one writer at a time: the loop, flush() and close() share the deque
        self._task: asyncio.Task[None] | None = None
        self._closing = False  # close() is draining; rows are still accepted
        self._closed = False
        self._failures = 0
        self.log = get_logger("gateway.ledger")

    @classmethod
    def from_config(cls, store: UsageSink, cfg: DatabaseConfig, **kwargs: Any) -> LedgerWriter:
        return cls(store, cfg.batch_size, cfg.flush_interval, cfg.queue_max, **kwargs)

    @property
    def depth(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------ request path
    def submit(self, row: UsageRow) -> bool:
        """Queue a row without blocking; False (and counted) when the queue is full or closed."""
        if self._closed or len(self._queue) >= self.queue_max:
            self._drop(1)
            return False
        self._queue.append(row)
        m.LEDGER_QUEUE.inc()  # inc/dec rather than set(): several writers may share the gauge
        if len(self._queue) >= self.batch_size:
            self._wake.set()
        return True

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is None:
            self._closing = self._closed = False
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def close(self) -> None:
        """Write what is left, for at most `close_timeout` seconds; rows still queued then are dropped."""
        timeout = self.close_timeout
        self._closing = True
        self._wake.set()
        self._stop.set()
        task, self._task = self._task, None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                if task is not None:
                    await task  # the loop drains the queue before it returns
                else:
                    await self._drain_retrying()
        await cancel_and_wait(task)
        self._closed = True
        if self._queue:
            left = len(self._queue)
            self.log.error("ledger_rows_lost_at_shutdown", rows=left, timeout_s=timeout)
            self._pop(left)
            self._drop(left)

    async def flush(self) -> None:
        """Write everything queued now (one attempt per batch; errors propagate)."""
        async with self._lock:
            while self._queue:
                await self._write_batch()

    # ------------------------------------------------------------ background loop
    async def _run(self) -> None:
        while True:
            timed_out = not await wait_event(self._wake, max(self.flush_interval, 0.01))
            self._wake.clear()
            # woken by size: write full batches only, the remainder waits for the interval (or joins
            # the next batch); the interval or close(): write everything
            await self._drain_retrying(full_only=not (timed_out or self._closing))
            if self._closing and not self._queue:
                return

    async def _drain_retrying(self, full_only: bool = False) -> None:
        """Write batches until the queue is empty (or holds less than a batch when `full_only`),
        sleeping with backoff between failed attempts."""
        while len(self._queue) >= (self.batch_size if full_only and not self._closing else 1):
            try:
                async with self._lock:
                    if self._queue:
                        await self._write_batch()
                if self._failures:
                    self._failures = 0
                    m.BACKEND_UP.labels("db").set(1)
                    self.log.warning("ledger_write_recovered", queued=len(self._queue))
            except Exception as err:
                self._failures += 1
                m.BACKEND_ERRORS.labels("db", "ledger_write").inc()
                m.BACKEND_UP.labels("db").set(0)
                delay = min(self.retry_backoff_max, self.retry_backoff * 2 ** (self._failures - 1))
                delay *= random.uniform(0.8, 1.2)  # replicas should not retry in lockstep
                self.log.warning("ledger_write_failed", error=_describe(err),
                                 queued=len(self._queue), retry_in_s=round(delay, 2))
                if self._closing:  # close() has a deadline: keep trying rather than sleeping long
                    await asyncio.sleep(min(delay, 1.0))
                else:  # a long backoff ends early when close() is called
                    await wait_event(self._stop, delay)

    async def _write_batch(self) -> None:
        # rows stay queued until the insert succeeds, so a failed batch is retried, never lost
        n = min(self.batch_size, len(self._queue))
        batch = list(itertools.islice(self._queue, n))
        try:
            await self.store.insert_usage(batch)
        except Exception as err:
            if not await self._rows_at_fault(err):
                raise
            await self._write_one_by_one(batch)
            return
        self._pop(n)
        self._written(n)

    async def _rows_at_fault(self, err: Exception) -> bool:
        """Was the insert refused because of the rows rather than the database being unavailable?"""
        if isinstance(err, _TRANSIENT) or getattr(err, "connection_invalidated", False):
            return False
        if isinstance(err, _DATA_ERRORS):
            return True
        # drivers classify inconsistently (asyncpg reports a bad parameter as a plain DBAPIError, sqlite3
        # raises a bare OverflowError): when the database still answers, the rows are the problem
        check = getattr(self.store, "check", None)
        return check is not None and await check() is None

    async def _write_one_by_one(self, batch: list[UsageRow]) -> None:
        """A row the database refuses would block the queue forever: isolate it and drop only it.
        Rows leave the queue one at a time, so a connection error half-way repeats none of them."""
        for row in batch:
            try:
                await self.store.insert_usage([row])
            except Exception as err:
                if not await self._rows_at_fault(err):
                    raise
                self.log.error("ledger_row_rejected", request_id=row.request_id, error=_describe(err))
                self._pop(1)
                self._drop(1)
                continue
            self._pop(1)
            self._written(1)

    def _pop(self, n: int) -> None:
        for _ in range(n):
            self._queue.popleft()
        m.LEDGER_QUEUE.dec(n)

    def _written(self, n: int) -> None:
        self.written += n
        m.LEDGER_WRITTEN.inc(n)

    def _drop(self, n: int) -> None:
        self.dropped += n
        m.LEDGER_DROPPED.inc(n)


def _describe(err: BaseException) -> str:
    # SQLAlchemy's message embeds the SQL and every parameter of the batch: log the driver's error only
    inner = getattr(err, "orig", None) or err
    return f"{type(inner).__name__}: {str(inner)[:300]}"
