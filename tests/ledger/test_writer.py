"""LedgerWriter: batching by size and time, flush on close, outages, bounded queue, metrics."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from proxy.config import DatabaseConfig
from proxy.ledger import LedgerStore, LedgerWriter, UsageRow


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class Metrics:
    """Deltas of the ledger metrics since the test started (the registry is process-wide)."""

    NAMES: dict[str, tuple[str, dict[str, str] | None]] = {
        "queue": ("gateway_ledger_queue_depth", None),
        "dropped": ("gateway_ledger_dropped_rows_total", None),
        "written": ("gateway_ledger_written_rows_total", None),
        "errors": ("gateway_backend_errors_total", {"backend": "db", "operation": "ledger_write"}),
    }

    def __init__(self) -> None:
        self.start = {k: metric(*v) for k, v in self.NAMES.items()}

    def __getitem__(self, key: str) -> float:
        return metric(*self.NAMES[key]) - self.start[key]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


class FakeStore:
    """Records batches; `fail` decides per call whether the database is 'down'."""

    def __init__(self, fail: Callable[[list[UsageRow]], BaseException | None] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.calls = 0
        self.fail = fail

    async def insert_usage(self, rows: list[UsageRow]) -> None:
        self.calls += 1
        await asyncio.sleep(0)
        err = self.fail(rows) if self.fail else None
        if err is not None:
            raise err
        self.batches.append([r.request_id for r in rows])

    @property
    def written(self) -> list[str]:
        return [rid for batch in self.batches for rid in batch]


def rows(n: int, start: int = 0) -> list[UsageRow]:
    return [UsageRow(request_id=f"r{i}", alias="a", provider="p", upstream_model="m")
            for i in range(start, start + n)]


async def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def fast_writer(store: Any, **kw: Any) -> LedgerWriter:
    kw = {"batch_size": 3, "flush_interval": 30.0, "queue_max": 100, "retry_backoff": 0.01,
          "retry_backoff_max": 0.05, **kw}
    return LedgerWriter(store, **kw)


async def test_batches_by_size(metrics: Metrics) -> None:
    store = FakeStore()
    w = fast_writer(store)  # the interval is long: only size can trigger these writes
    await w.start()
    for r in rows(7):
        assert w.submit(r) is True
    await wait_for(lambda: len(store.written) == 6)
    assert store.batches == [["r0", "r1", "r2"], ["r3", "r4", "r5"]]
    await asyncio.sleep(0.05)
    assert w.depth == 1 and metrics["queue"] == 1  # the rest waits for the interval (or close)
    await w.close()
    assert store.written == [f"r{i}" for i in range(7)]
    assert metrics["written"] == 7 and metrics["queue"] == 0 and metrics["dropped"] == 0


async def test_batches_by_time() -> None:
    store = FakeStore()
    w = fast_writer(store, batch_size=100, flush_interval=0.05)
    await w.start()
    t0 = time.monotonic()
    for r in rows(2):
        w.submit(r)
    await wait_for(lambda: store.written == ["r0", "r1"], timeout=1.0)
    assert time.monotonic() - t0 < 0.5
    for r in rows(1, start=2):
        w.submit(r)
    await wait_for(lambda: len(store.written) == 3, timeout=1.0)
    assert store.batches == [["r0", "r1"], ["r2"]]
    await w.close()


async def test_submit_never_touches_the_database() -> None:
    """The request path only queues: submit is a plain call that writes nothing (how cheap it is is for
    the benchmarks, loadtests/feature_bench.py, not for a timed unit test)."""
    store = FakeStore()
    w = fast_writer(store, batch_size=10_000, queue_max=200_000)
    assert not inspect.iscoroutinefunction(w.submit)
    for r in rows(50_000):
        assert w.submit(r) is True  # queued
    assert store.calls == 0 and w.depth == 50_000
    await w.close()
    assert w.depth == 0 and w.written == 50_000


async def test_close_flushes_everything_left() -> None:
    store = FakeStore()
    w = fast_writer(store, batch_size=4)
    await w.start()
    for r in rows(10):
        w.submit(r)
    await w.close()
    assert store.written == [f"r{i}" for i in range(10)]
    assert all(len(b) <= 4 for b in store.batches)


async def test_close_without_start_still_writes() -> None:
    store = FakeStore()
    w = fast_writer(store)
    for r in rows(5):
        w.submit(r)
    await w.close()
    assert store.written == [f"r{i}" for i in range(5)]


async def test_submit_after_close_is_dropped(metrics: Metrics) -> None:
    w = fast_writer(FakeStore())
    await w.start()
    await w.close()
    assert w.submit(rows(1)[0]) is False
    assert metrics["dropped"] == 1


async def test_db_down_rows_wait_then_get_written(metrics: Metrics) -> None:
    down = {"on": True}
    store = FakeStore(lambda _: ConnectionRefusedError("db down") if down["on"] else None)
    w = fast_writer(store)
    await w.start()
    for r in rows(5):
        w.submit(r)
    # several retries while down (the error is counted after the fake store's await, so wait for that)
    await wait_for(lambda: store.calls >= 3 and metrics["errors"] >= 3)
    assert store.written == [] and w.depth == 5 and metrics["queue"] == 5
    assert metric("gateway_backend_up", {"backend": "db"}) == 0
    for r in rows(2, start=5):  # new rows keep queueing during the outage
        w.submit(r)
    down["on"] = False
    await wait_for(lambda: len(store.written) == 6)  # the full batches go right away
    assert metric("gateway_backend_up", {"backend": "db"}) == 1
    await w.close()
    assert store.written == [f"r{i}" for i in range(7)]  # in order, nothing twice
    assert metrics["written"] == 7 and metrics["dropped"] == 0 and metrics["queue"] == 0


async def test_backoff_grows_between_retries() -> None:
    times: list[float] = []

    def fail(_: list[UsageRow]) -> BaseException:
        times.append(time.monotonic())
        return OSError("down")

    w = fast_writer(FakeStore(fail), flush_interval=0.01, retry_backoff=0.05, retry_backoff_max=10.0,
                    close_timeout=0.2)
    w.submit(rows(1)[0])
    await w.start()
    await wait_for(lambda: len(times) >= 4)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[2] > gaps[0] * 2  # exponential (with +-20% jitter)
    await w.close()


async def test_queue_bound_drops_newest_and_counts(metrics: Metrics) -> None:
    down = {"on": True}
    store = FakeStore(lambda _: OSError("db down") if down["on"] else None)
    w = fast_writer(store, queue_max=5, batch_size=2)
    await w.start()
    results = [w.submit(r) for r in rows(8)]
    assert results == [True] * 5 + [False] * 3
    assert w.dropped == 3 and metrics["dropped"] == 3 and metrics["queue"] == 5
    down["on"] = False
    await w.close()
    assert store.written == [f"r{i}" for i in range(5)]  # the oldest rows were kept


async def test_close_is_bounded_when_db_stays_down(metrics: Metrics) -> None:
    store = FakeStore(lambda _: OSError("db down"))
    w = fast_writer(store, close_timeout=0.3, retry_backoff=5.0, retry_backoff_max=5.0)
    await w.start()
    for r in rows(4):
        w.submit(r)
    await wait_for(lambda: store.calls >= 1)  # now in a long backoff sleep; close() must cut it short
    t0 = time.monotonic()
    await w.close()
    assert time.monotonic() - t0 < 1.5
    assert store.calls >= 2  # close() retried instead of waiting out the backoff
    assert w.depth == 0 and metrics["queue"] == 0
    assert metrics["dropped"] == 4


async def test_a_rejected_row_does_not_block_the_queue(metrics: Metrics) -> None:
    def fail(batch: list[UsageRow]) -> BaseException | None:
        if any(r.request_id == "r4" for r in batch):
            return sa.exc.IntegrityError("INSERT ...", {}, Exception("bad value"))
        return None

    store = FakeStore(fail)
    w = fast_writer(store)
    for r in rows(7):
        w.submit(r)
    await w.close()
    assert store.written == ["r0", "r1", "r2", "r3", "r5", "r6"]
    assert metrics["dropped"] == 1 and metrics["written"] == 6 and metrics["queue"] == 0


async def test_flush_writes_now() -> None:
    store = FakeStore()
    w = fast_writer(store, batch_size=100)
    await w.start()
    for r in rows(3):
        w.submit(r)
    await w.flush()
    assert store.written == ["r0", "r1", "r2"]
    await w.close()


def test_from_config() -> None:
    cfg = DatabaseConfig(batch_size=7, flush_interval="250ms", queue_max=9)
    w = LedgerWriter.from_config(FakeStore(), cfg)
    assert (w.batch_size, w.flush_interval, w.queue_max) == (7, 0.25, 9)


async def test_writer_with_real_store(db_url: str) -> None:
    """End to end on both dialects: a store that is down at first, and a row the database refuses."""
    store = LedgerStore(db_url)
    await store.migrate()
    real_insert = store.insert_usage
    fails = {"left": 2}

    async def flaky(batch: list[UsageRow]) -> None:
        if fails["left"]:
            fails["left"] -= 1
            raise sa.exc.OperationalError("INSERT", {}, Exception("connection refused"))
        await real_insert(batch)

    store.insert_usage = flaky  # type: ignore[method-assign]
    w = fast_writer(store, batch_size=50, flush_interval=0.05, queue_max=1000)
    await w.start()
    batch = rows(121)
    # a value the database refuses (out of range for PostgreSQL's integer, for SQLite's int64): only
    # this row is dropped, though each driver reports it with a different exception
    batch[60].prompt_tokens = 2**70
    for r in batch:
        w.submit(r)
    await w.close()
    try:
        [t] = await store.query_usage()
        assert t["calls"] == 120
        assert fails["left"] == 0
        assert (w.written, w.dropped) == (120, 1)
        assert "r60" not in {r["request_id"] for r in await store.recent_usage(None, limit=200)}
    finally:
        if store.dialect == "postgresql":
            async with store.engine.begin() as conn:
                await conn.execute(sa.text("TRUNCATE usage RESTART IDENTITY"))
        await store.close()
