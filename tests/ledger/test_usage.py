"""Usage ledger: inserts, aggregates, grouping, filters, percentiles and spend on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from proxy.ledger import GROUP_BYS, LedgerStore, UsageRow
from proxy.ledger.store import percentile

DAY1 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
DAY2 = datetime(2025, 3, 2, 23, 30, tzinfo=UTC)


def row(n: int, **kw: Any) -> UsageRow:
    base: dict[str, Any] = {
        "request_id": f"req-{n}", "key_id": "key_a", "key_name": "alice", "user": "u1", "team": "red",
        "alias": "fast", "provider": "openai", "upstream_model": "gpt-4o-mini", "prompt_tokens": 10,
        "completion_tokens": 5, "cost_usd": 0.01, "latency_ms": 100.0, "created_at": DAY1,
    }
    return UsageRow(**{**base, **kw})


def dataset() -> list[UsageRow]:
    """Two keys, two teams, two providers, two days, some errors and cache hits."""
    return [
        row(1),
        row(2, latency_ms=200.0, status=500, error_type="upstream_error", cost_usd=0.0),
        row(3, latency_ms=300.0, cache_hit=True, cost_usd=0.0, saved_usd=0.01, cached_tokens=10),
        row(4, key_id="key_b", key_name="bob", user="u2", team="blue", provider="anthropic",
            upstream_model="claude-3-5-haiku", alias="smart", latency_ms=400.0, cost_usd=0.05,
            created_at=DAY2, stream=True, ttft_ms=50.0),
        row(5, key_id="key_b", key_name="bob", user="u2", team="blue", status=429, error_type="rate_limit",
            latency_ms=5.0, cost_usd=0.0, prompt_tokens=0, completion_tokens=0, created_at=DAY2),
    ]


async def test_roundtrip_keeps_every_field(store: LedgerStore) -> None:
    r = row(1, ttft_ms=12.5, stream=True, fallback="slow", attempts=3, error_type=None, client_ip="2001:db8::7",
            created_at=datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    await store.insert_usage([r])
    [got] = await store.recent_usage("key_a")
    expected = r.as_dict()
    expected["created_at"] = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)  # stored and returned as UTC
    assert isinstance(got.pop("id"), int)
    assert got == expected
    assert got["created_at"].tzinfo is not None


async def test_insert_nothing_is_a_noop(store: LedgerStore) -> None:
    await store.insert_usage([])
    assert (await store.query_usage())[0]["calls"] == 0


async def test_totals(store: LedgerStore) -> None:
    await store.insert_usage(dataset())
    [t] = await store.query_usage({})
    assert t == {
        "calls": 5, "prompt_tokens": 40, "completion_tokens": 20, "cached_tokens": 10,
        "cost_usd": 0.06, "saved_usd": 0.01, "errors": 2, "error_rate": 0.4,
        "latency_p50_ms": 200.0, "latency_p95_ms": 380.0, "cache_hits": 1, "last_call_at": DAY2.isoformat(),
        "prompt_saved_tokens": 0, "prompt_saved_usd": 0.0,
    }


@pytest.mark.parametrize(("group_by", "expected"), [
    ("day", {"2025-03-01": 3, "2025-03-02": 2}),
    ("key", {"alice": 3, "bob": 2}),
    ("provider", {"openai": 4, "anthropic": 1}),
    ("alias", {"fast": 4, "smart": 1}),
    ("team", {"red": 3, "blue": 2}),
    ("model", {"gpt-4o-mini": 4, "claude-3-5-haiku": 1}),
])
async def test_group_by(store: LedgerStore, group_by: str, expected: dict[str, int]) -> None:
    await store.insert_usage(dataset())
    groups = await store.query_usage({}, group_by)
    assert {g[group_by]: g["calls"] for g in groups} == expected
    assert sum(g["cost_usd"] for g in groups) == pytest.approx(0.06)
    assert set(GROUP_BYS) >= {group_by}


async def test_group_by_day_order_and_values(store: LedgerStore) -> None:
    await store.insert_usage(dataset())
    d1, d2 = await store.query_usage({}, "day")
    assert (d1["day"], d2["day"]) == ("2025-03-01", "2025-03-02")
    assert d1["errors"] == 1 and d1["error_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert d1["cache_hits"] == 1 and d1["saved_usd"] == pytest.approx(0.01)
    assert d2["latency_p50_ms"] == pytest.approx(202.5)


async def test_group_by_day_is_utc(store: LedgerStore) -> None:
    # 23:30 at UTC-5 is 04:30 the next day in UTC
    await store.insert_usage([row(1, created_at=datetime(2025, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))))])
    assert [g["day"] for g in await store.query_usage({}, "day")] == ["2025-03-02"]


async def test_group_by_key_reports_name_and_id(store: LedgerStore) -> None:
    await store.insert_usage([*dataset(), row(9, key_id=None, key_name=None, cost_usd=0.0)])
    groups = await store.query_usage({}, "key")
    assert [(g["key"], g["key_id"]) for g in groups] == [("bob", "key_b"), ("alice", "key_a"), (None, None)]


async def test_each_group_tells_its_last_call(store: LedgerStore) -> None:
    # the console's "last use" of a key
    await store.insert_usage(dataset())
    groups = {g["key_id"]: g["last_call_at"] for g in await store.query_usage({}, "key")}
    assert groups == {"key_a": DAY1.isoformat(), "key_b": DAY2.isoformat()}
    assert (await store.query_usage({"key": "nobody"}, None))[0]["last_call_at"] is None


async def test_groups_sorted_by_cost(store: LedgerStore) -> None:
    await store.insert_usage(dataset())
    assert [g["provider"] for g in await store.query_usage({}, "provider")] == ["anthropic", "openai"]


@pytest.mark.parametrize(("filters", "calls"), [
    ({"key": "alice"}, 3),
    ({"key": "key_b"}, 2),
    ({"key": "nobody"}, 0),
    ({"user": "u2"}, 2),
    ({"team": "red"}, 3),
    ({"provider": "anthropic"}, 1),
    ({"alias": "fast"}, 4),
    ({"model": "gpt-4o-mini"}, 4),
    ({"status": 200}, 3),
    ({"status": "500"}, 1),
    ({"status": "2xx"}, 3),
    ({"status": "4xx"}, 1),
    ({"status": "5xx"}, 1),
    ({"since": DAY2 - timedelta(hours=1)}, 2),
    ({"until": DAY2 - timedelta(hours=1)}, 3),
    ({"since": DAY1, "until": DAY1 + timedelta(seconds=1)}, 3),  # since inclusive
    ({"since": DAY1 + timedelta(microseconds=1)}, 2),
    ({"until": DAY1}, 0),  # until exclusive
    ({"since": "2025-03-02T00:00:00Z"}, 2),  # ISO strings from query params are fine too
    ({"team": "blue", "status": "4xx"}, 1),
    ({"team": None, "key": ""}, 5),  # empty filters are ignored
])
async def test_filters(store: LedgerStore, filters: dict[str, Any], calls: int) -> None:
    await store.insert_usage(dataset())
    assert (await store.query_usage(filters))[0]["calls"] == calls


async def test_filters_with_group_by(store: LedgerStore) -> None:
    await store.insert_usage(dataset())
    groups = await store.query_usage({"team": "blue"}, "provider")
    assert {g["provider"]: g["calls"] for g in groups} == {"anthropic": 1, "openai": 1}


async def test_bad_arguments(store: LedgerStore) -> None:
    with pytest.raises(ValueError, match="group_by"):
        await store.query_usage({}, "week")
    with pytest.raises(ValueError, match="unknown usage filter"):
        await store.query_usage({"colour": "red"})
    with pytest.raises(ValueError, match="status"):
        await store.query_usage({"status": "6xx"})
    with pytest.raises(ValueError, match="scope"):
        await store.spend("org", "x", DAY1)


async def test_percentiles_match_percentile_cont(store: LedgerStore) -> None:
    rows = [row(i, latency_ms=float(i), provider="a" if i <= 100 else "b") for i in range(1, 111)]
    await store.insert_usage(rows)
    groups = {g["provider"]: g for g in await store.query_usage({}, "provider")}
    assert groups["a"]["latency_p50_ms"] == pytest.approx(50.5)
    assert groups["a"]["latency_p95_ms"] == pytest.approx(95.05)
    assert groups["b"]["latency_p50_ms"] == pytest.approx(105.5)
    assert groups["b"]["latency_p95_ms"] == pytest.approx(109.55)
    [t] = await store.query_usage({"provider": "b"})
    assert t["latency_p50_ms"] == pytest.approx(105.5)


def test_percentile_function() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([float(i) for i in range(1, 101)], 0.95) == pytest.approx(95.05)


async def test_spend(store: LedgerStore) -> None:
    await store.insert_usage([
        *dataset(),
        row(10, cost_usd=1.25, created_at=DAY1 - timedelta(days=40)),  # an earlier budget period
        row(11, key_id="key_c", key_name="carol", team="red", cost_usd=0.1, created_at=DAY2),
    ])
    assert await store.spend("key", "key_a", DAY1) == pytest.approx(0.01)
    assert await store.spend("key", "alice", DAY1 - timedelta(days=60)) == pytest.approx(1.26)
    assert await store.spend("key", "bob", DAY1) == pytest.approx(0.05)
    assert await store.spend("team", "red", DAY1) == pytest.approx(0.11)
    assert await store.spend("team", "red", DAY2) == pytest.approx(0.1)
    assert await store.spend("team", "red", DAY1, until=DAY2) == pytest.approx(0.01)
    assert await store.spend("team", "green", DAY1) == 0.0
    assert isinstance(await store.spend("team", "green", DAY1), float)


async def test_recent_usage(store: LedgerStore) -> None:
    await store.insert_usage(dataset())
    recent = await store.recent_usage("key_a", limit=2)
    assert [r["request_id"] for r in recent] == ["req-3", "req-2"]  # same time: newest id first
    assert [r["request_id"] for r in await store.recent_usage(None, limit=1)] == ["req-5"]
    assert [r["request_id"] for r in await store.recent_usage("bob")] == ["req-5", "req-4"]
    assert "key_sha256" not in recent[0]


async def test_many_rows_in_one_insert(store: LedgerStore) -> None:
    await store.insert_usage([row(i, latency_ms=float(i % 50)) for i in range(2000)])
    [t] = await store.query_usage()
    assert t["calls"] == 2000
    assert t["cost_usd"] == pytest.approx(20.0)


async def test_check_reports_health(store: LedgerStore) -> None:
    assert await store.check() is None


async def test_sqlite_fast_insert_stores_what_sqlalchemy_would(tmp_path: Any) -> None:
    """SQLite rows go in through the driver's executemany (no per-row bind processing): the stored text
    must be exactly what SQLAlchemy's own insert writes, or range filters and reads would drift."""

    from proxy.ledger.schema import usage

    store = LedgerStore(f"sqlite:///{tmp_path / 'fast.db'}")
    await store.migrate()
    try:
        when = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
        fast = row(1, created_at=when, cache_hit=True, stream=True, ttft_ms=None, user=None)
        await store.insert_usage([fast])
        async with store.engine.begin() as conn:
            await conn.execute(usage.insert(), [row(2, created_at=when, cache_hit=True, stream=True, ttft_ms=None,
                                                     user=None).as_dict()])
            raw = (await conn.exec_driver_sql(
                "SELECT request_id, created_at, typeof(created_at), cache_hit, typeof(cache_hit), stream, ttft_ms,"
                " user, cost_usd FROM usage ORDER BY request_id")).all()
        assert raw[0][1:] == raw[1][1:]
        assert raw[0][1] == "2025-03-01 10:30:15.123456"  # naive UTC text
        back = await store.recent_usage()
        assert {r["request_id"]: r["created_at"] for r in back} == {"req-1": when, "req-2": when}
    finally:
        await store.close()


@pytest.mark.parametrize("pattern", ["runs", "every row different"])
async def test_sqlite_rows_with_nulls_keep_order_and_values(tmp_path: Any, pattern: str) -> None:
    """SQLite rows leave their NULL columns out of the INSERT (binding None is slow in sqlite3), in runs of
    rows alike; too many runs in a batch go in as one full-width INSERT. Either way the rows, their ids'
    order and every stored value must be what SQLAlchemy's own insert gives."""
    from proxy.ledger.schema import usage

    rows = []
    for i in range(12):
        k = i // 3 if pattern == "runs" else i % 4
        rows.append(row(i, user=None if k % 2 else "u", team=None if k < 2 else "t",
                        ttft_ms=None if k == 1 else 5.5, error_type="boom" if k == 3 else None,
                        fallback="other" if k == 2 else None, cache_hit=bool(k % 2), stream=k == 2))
    fast, slow = LedgerStore(f"sqlite:///{tmp_path / 'fast.db'}"), LedgerStore(f"sqlite:///{tmp_path / 'slow.db'}")
    for s in (fast, slow):
        await s.migrate()
    try:
        await fast.insert_usage(rows)
        async with slow.engine.begin() as conn:
            await conn.execute(usage.insert(), [r.as_dict() for r in rows])
        stored = []
        for s in (fast, slow):
            async with s.engine.connect() as conn:
                stored.append((await conn.exec_driver_sql("SELECT * FROM usage ORDER BY id")).all())
        assert [r[1] for r in stored[0]] == [f"req-{i}" for i in range(12)]
        assert stored[0] == stored[1]
    finally:
        await fast.close()
        await slow.close()
