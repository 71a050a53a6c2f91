"""Smaller pieces: provider moves on failover, the Redis script against limits' own strategy, the key cache,
the shared Redis client's failure paths, admin query validation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from proxy.admission.quotas import Stats, Window, fmt_duration
from proxy.admission.redis_counters import RedisCounters
from proxy.auth.keystore import KeyStore
from proxy.config import RedisConfig
from proxy.core.errors import GatewayError
from proxy.core.identity import KeyInfo
from proxy.infra.redis_client import RedisClient
from tests.admission.conftest import (
    TcpRelay,
    admin,
    chat,
    closed_port_url,
    post_chat,
    quota_config,
    wait_for,
    with_key,
)
from tests.conftest import GatewayFactory, MockUpstream


async def test_failover_charges_the_provider_that_served(gateway_factory: GatewayFactory,
                                                         mock_upstream: MockUpstream,
                                                         http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(mock_upstream.url), limits={"per_provider": {"up": {"rpd": 10}, "mock": {"rpd": 10}}})
    cfg["models"]["dual"] = {"route": [{"provider": "up", "model": "mock-1"}, {"provider": "mock", "model": "mock-1"}],
                             "retry": {"attempts": 2, "backoff": 0}}
    gw = await gateway_factory(cfg)
    mock_upstream.configure(error_status=500)
    status, h, _ = await post_chat(http, gw, chat("dual"))
    assert status == 200 and h["x-gateway-provider"] == "mock"
    admission = gw.gateway.admission
    key = next(iter(gw.gateway.pipeline.auth._by_hash.values()))

    async def moved() -> bool:
        left = {r["name"]: r["remaining"] for r in await admission.limit_status(key)}
        return left == {"up": 10, "mock": 9}

    await wait_for(moved)


async def test_redis_windows_decide_like_limits(redis_url: str) -> None:
    """Our multi-window Lua keeps limits' sliding-window-counter semantics and key layout."""
    client = RedisClient(RedisConfig(url=redis_url))
    await client.start()
    try:
        counters = RedisCounters(client)
        item = RateLimitItemPerSecond(5, 1, namespace="gw")
        ours = Window.make(item, ("key", "ours"), "requests", "rpm", "key", "ours")
        theirs = ("key", "theirs")
        limiter = SlidingWindowCounterRateLimiter(RedisStorage(
            "async+redis://", implementation="redispy", connection_pool=client.client.connection_pool))

        async def both() -> tuple[bool, bool]:
            outcome = await counters.acquire([ours], [1], [], 0.0)
            assert outcome is not None
            return outcome.failed_window < 0, await limiter.hit(item, *theirs)

        first = [await both() for _ in range(7)]
        assert first == [(True, True)] * 5 + [(False, False)] * 2
        # limits reads our window like its own
        assert (await limiter.get_window_stats(item, *ours.ids)).remaining == 0
        await asyncio.sleep(1.3)  # the previous window still weighs ~70%: both admit about as few
        middle = [await both() for _ in range(5)]
        assert abs(sum(d[0] for d in middle) - sum(d[1] for d in middle)) <= 1
        assert 0 < sum(d[0] for d in middle) < 5
        await asyncio.sleep(2.2)  # both windows gone
        assert [await both() for _ in range(3)] == [(True, True)] * 3
    finally:
        await client.close()


def test_retry_after_and_durations() -> None:
    w = Window.make(RateLimitItemPerSecond(10, 60, namespace="t"), ("x",), "requests", "rpm", "key", "x")
    # current window full: wait for it to end (20 s), then a little decay
    assert Stats(0, 0.0, 10, 80.0).retry_after(w, 1) == pytest.approx(20.0)
    # previous window's share in the way: 10 * (30 - t)/60 < 10 - 1 - 4 + 1 -> t > 30 - 36 = no wait
    assert Stats(10, 30.0, 4, 90.0).retry_after(w, 1) == 0.0
    assert Stats(10, 50.0, 4, 110.0).retry_after(w, 1) == pytest.approx(14.0)
    assert Stats(0, 0.0, 0, 0.0).retry_after(w, 11) == 60.0  # never fits
    assert [fmt_duration(v) for v in (0.02, 1, 59.2, 90, 3725)] == ["20ms", "1s", "1m0s", "1m30s", "1h2m5s"]


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.fail = False
        self.changed: list[dict[str, Any]] = []

    async def find_key_by_hash(self, digest: str) -> dict[str, Any] | None:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise ConnectionError("db down")
        return self.rows.get(digest)

    async def keys_changed_since(self, ts: datetime | None) -> list[dict[str, Any]]:
        return self.changed


def _row(key_id: str, **kw: Any) -> dict[str, Any]:
    return {"id": key_id, "name": key_id, "models": ["*"], "limits": {"rpm": 5}, "budget": None, "user": None,
            "team": None, "metadata": {}, "cache": None, "expires_at": None, "disabled": False,
            "matched_previous": False, "previous_expires_at": None, **kw}


async def test_keystore_caches_dedupes_and_survives_a_db_outage() -> None:
    store = FakeStore()
    ks = KeyStore(store, negative_ttl=60)  # type: ignore[arg-type]
    store.rows["a" * 64] = _row("k1")
    infos = await asyncio.gather(*(ks.lookup("a" * 64) for _ in range(10)))
    assert store.calls == 1 and all(isinstance(i, KeyInfo) and i.limits.rpm == 5 for i in infos)  # type: ignore[union-attr]
    assert await ks.lookup("b" * 64) is None and await ks.lookup("b" * 64) is None
    assert store.calls == 2  # the unknown digest is cached too
    store.rows["b" * 64] = _row("k2")
    ks.invalidate("k2")  # e.g. the admin API created it: negative answers go
    assert (await ks.lookup("b" * 64)).id == "k2"  # type: ignore[union-attr]
    # the database goes down: known keys keep working from cache (even expired entries), unknown -> 503
    store.fail = True
    ks._cache["a" * 64] = (ks._cache["a" * 64][0], 0.0)
    assert (await ks.lookup("a" * 64)).id == "k1"  # type: ignore[union-attr]
    with pytest.raises(GatewayError) as exc:
        await ks.lookup("c" * 64)
    assert exc.value.status == 503
    # polling: a changed row drops its entries (seen once per version)
    store.fail = False
    store.changed = [{"id": "k1", "updated_at": datetime.now(UTC)}]
    await ks.poll_once()
    assert "a" * 64 not in ks._cache
    ks._cache["a" * 64] = (None, time.monotonic() + 60)
    await ks.poll_once()  # same version: nothing to do
    assert "a" * 64 in ks._cache
    ks._on_message(b"*")
    assert not ks._cache


async def test_keystore_lookup_survives_the_first_caller_leaving() -> None:
    """Concurrent misses share one query; the caller that started it hanging up does not fail the others."""
    store = FakeStore()
    ks = KeyStore(store)  # type: ignore[arg-type]
    store.rows["a" * 64] = _row("k1")
    first = asyncio.ensure_future(ks.lookup("a" * 64))
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(ks.lookup("a" * 64)) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()
    assert [i.id for i in await asyncio.gather(*others)] == ["k1"] * 3  # type: ignore[union-attr]
    assert store.calls == 1


async def test_keystore_rotation_grace_bounds_the_cache() -> None:
    store = FakeStore()
    ks = KeyStore(store, ttl=60)  # type: ignore[arg-type]
    store.rows["d" * 64] = _row("k3", matched_previous=True,
                                previous_expires_at=datetime.now(UTC) + timedelta(seconds=0.2))
    assert (await ks.lookup("d" * 64)).id == "k3"  # type: ignore[union-attr]
    assert ks._cache["d" * 64][1] - time.monotonic() < 0.3  # cached only while the grace lasts


async def test_redis_client_failure_paths(relay: tuple[TcpRelay, str]) -> None:
    proxy, url = relay
    client = RedisClient(RedisConfig(url=url), probe_interval=0.05)
    await client.start()
    recovered: list[bool] = []
    client.on_recover.append(lambda: recovered.append(True))
    messages: list[bytes] = []
    reconnects: list[bool] = []
    client.subscribe("gw:test", messages.append, on_connect=lambda: reconnects.append(True))
    try:
        await asyncio.sleep(0.2)
        await client.publish("gw:test", "hello")
        await wait_for(lambda: messages == [b"hello"])
        await proxy.stop()
        assert await client.quietly("get", lambda: client.client.get("x"), "fallback") == "fallback"
        assert not client.up and await client.check() is None  # fail_open: still ready
        assert await client.quietly("get", lambda: client.client.get("x"), "skipped") == "skipped"
        await client.publish("gw:test", "lost")  # while down: dropped quietly
        await proxy.start()
        await wait_for(lambda: client.up and recovered == [True], timeout=5)
        await wait_for(lambda: reconnects, timeout=5)  # resubscribed: the caller resyncs
        await client.publish("gw:test", "again")
        await wait_for(lambda: messages[-1] == b"again", timeout=5)
    finally:
        await client.close()


async def test_redis_client_fail_closed_readiness() -> None:
    client = RedisClient(RedisConfig(url=closed_port_url(), failure_mode="fail_closed"), probe_interval=10)
    await client.start()
    try:
        assert await client.check() is not None
        with pytest.raises(GatewayError) as exc:
            await client.call("x", lambda: client.client.get("x"), None)
        assert exc.value.status == 503
    finally:
        await client.close()


async def test_audit_query_validation(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config())
    for query, field in (("limit=0", "limit"), ("limit=abc", "limit"), ("since=yesterday", "since")):
        async with http.get(gw.url + f"/admin/audit?{query}", headers=admin()) as r:
            assert r.status == 422 and (await r.json())["error"]["param"] == field
    async with http.get(gw.url + "/admin/audit?since=2020-01-01&limit=5", headers=admin()) as r:
        assert r.status == 200 and (await r.json())["data"] == []
    async with http.get(gw.url + "/admin/budgets?scope=nope", headers=admin()) as r:
        assert r.status == 422
