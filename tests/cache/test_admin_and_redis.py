"""Invalidation through the admin API (memory and Redis backends), and the Redis backend itself."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from proxy.cache.backend import BackendUnavailable
from proxy.cache.redis_backend import RedisBackend
from proxy.config import RedisConfig
from proxy.infra.redis_client import RedisClient
from tests.cache.conftest import admin, cache_config, chat_body, post, with_redis
from tests.conftest import GatewayFactory, GatewayServer, MockUpstream, free_port


@pytest.fixture(params=["memory", "redis"])
async def gw(request: Any, gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    if request.param == "memory":
        return await gateway_factory(cache_config(mock_upstream.url))
    url = request.getfixturevalue("redis_url")
    cfg = cache_config(mock_upstream.url, backend="redis")
    with_redis(cfg, url)
    return await gateway_factory(cfg)


async def status_of(http: Any, gw: GatewayServer, body: dict[str, Any]) -> str:
    _, h, _ = await post(http, gw, body)
    return h["x-gateway-cache"]


async def warm(http: Any, gw: GatewayServer, *bodies: dict[str, Any]) -> None:
    for b in bodies:
        await post(http, gw, b)
        assert await status_of(http, gw, b) == "hit"


async def test_backend_hits_and_stream_crossover(gw: GatewayServer, mock_upstream: MockUpstream,
                                                 http: Any) -> None:
    client = gw.openai()
    body = chat_body("cross over")
    _ = [c async for c in await client.chat.completions.create(**body, stream=True)]
    raw = await client.chat.completions.with_raw_response.create(**body)
    assert raw.headers["x-gateway-cache"] == "hit" and raw.parse().choices[0].message.content == "cross over"
    text = ""
    async for c in await client.chat.completions.create(**body, stream=True):
        text += (c.choices[0].delta.content or "") if c.choices else ""
    assert text == "cross over" and mock_upstream.calls == 1


async def test_delete_one_by_key_hash(gw: GatewayServer, http: Any) -> None:
    a, b = chat_body("one"), chat_body("two")
    await warm(http, gw, a, b)
    _, h, _ = await post(http, gw, a)
    key = h["x-gateway-cache-key"]
    async with http.delete(f"{gw.url}/admin/cache/{key}", headers=admin()) as r:
        assert r.status == 200 and (await r.json()) == {"key": key, "deleted": True}
    async with http.delete(f"{gw.url}/admin/cache/{key}", headers=admin()) as r:
        assert r.status == 404 and (await r.json())["deleted"] is False
    assert await status_of(http, gw, a) == "miss" and await status_of(http, gw, b) == "hit"


async def test_invalidate_by_request_body(gw: GatewayServer, http: Any) -> None:
    a, b = chat_body("body one"), chat_body("body two")
    await warm(http, gw, a, b)
    # stream / user do not change the key: the same entry
    async with http.post(f"{gw.url}/admin/cache/invalidate", json={**a, "stream": True, "user": "z"},
                         headers=admin()) as r:
        out = await r.json()
        assert r.status == 200 and out["deleted"] is True and len(out["key"]) == 32
    assert await status_of(http, gw, a) == "miss" and await status_of(http, gw, b) == "hit"
    emb = {"model": "up", "input": "vector me"}
    await post(http, gw, emb, path="/embeddings")
    async with http.post(f"{gw.url}/admin/cache/invalidate", json=emb, headers=admin()) as r:
        assert (await r.json())["deleted"] is True


async def test_clear_alias_and_everything(gw: GatewayServer, http: Any) -> None:
    up1, up2, demo = chat_body("alias a"), chat_body("alias b"), {**chat_body("alias c"), "model": "demo"}
    await warm(http, gw, up1, up2, demo)
    async with http.delete(f"{gw.url}/admin/cache", params={"alias": "up"}, headers=admin()) as r:
        assert r.status == 200 and (await r.json()) == {"deleted": 2, "alias": "up"}
    assert [await status_of(http, gw, b) for b in (up1, demo)] == ["miss", "hit"]
    async with http.delete(f"{gw.url}/admin/cache", headers=admin()) as r:
        assert r.status == 200 and (await r.json())["deleted"] == 2
    assert await status_of(http, gw, demo) == "miss"


@pytest.mark.parametrize("method,path,body", [
    ("DELETE", "/admin/cache", None), ("DELETE", "/admin/cache/" + "0" * 32, None),
    ("POST", "/admin/cache/invalidate", chat_body()),
])
async def test_admin_needs_the_admin_key(gw: GatewayServer, http: Any, method: str, path: str,
                                         body: Any) -> None:
    async with http.request(method, gw.url + path, json=body) as r:
        assert r.status == 401
    async with http.request(method, gw.url + path, json=body, headers=admin("sk-test-dev")) as r:
        assert r.status == 403


async def test_admin_bad_input(gw: GatewayServer, http: Any) -> None:
    async with http.delete(f"{gw.url}/admin/cache/not-a-key", headers=admin()) as r:
        assert r.status == 400
    async with http.post(f"{gw.url}/admin/cache/invalidate", json={"model": "up"}, headers=admin()) as r:
        assert r.status == 400
    async with http.post(f"{gw.url}/admin/cache/invalidate", json={**chat_body(), "model": "nope"},
                         headers=admin()) as r:
        assert r.status == 404


async def test_admin_with_cache_disabled(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                         http: Any) -> None:
    cfg = cache_config(mock_upstream.url)
    cfg["cache"] = {"enabled": False}
    gw = await gateway_factory(cfg)
    async with http.delete(f"{gw.url}/admin/cache", headers=admin()) as r:
        assert (await r.json()) == {"deleted": 0, "enabled": False}
    async with http.post(f"{gw.url}/admin/cache/invalidate", json=chat_body(), headers=admin()) as r:
        assert (await r.json())["enabled"] is False


# ---------------------------------------------------------------- Redis failure
def redis_errors() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "gateway_backend_errors":
            total += sum(s.value for s in metric.samples
                         if s.name.endswith("_total") and s.labels.get("backend") == "redis")
    return total


async def test_redis_down_degrades_to_no_caching(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                                 http: Any) -> None:
    cfg = cache_config(mock_upstream.url, backend="redis")
    with_redis(cfg, f"redis://127.0.0.1:{free_port()}/0", failure_mode="fail_closed")
    before = redis_errors()
    gw = await gateway_factory(cfg)
    for _ in range(3):
        status, h, _ = await post(http, gw, chat_body("no redis"))
        assert status == 200 and h["x-gateway-cache"] == "miss"
    assert mock_upstream.calls == 3 and redis_errors() > before
    async with http.delete(f"{gw.url}/admin/cache", headers=admin()) as r:
        assert r.status == 503 and (await r.json())["error"]["code"] == "cache_backend_unavailable"


async def test_redis_errors_on_each_operation_are_counted(mock_upstream: MockUpstream) -> None:
    from proxy.cache.backend import Entry
    from proxy.providers.base import Completion, Usage

    rc = RedisClient(RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0"), probe_interval=60)
    backend = RedisBackend(rc)
    before = redis_errors()
    assert await backend.get("k") is None
    rc.up = True
    e = Entry(Completion(b"{}", Usage(), "m"), "p", "m", 0.0, 1e12, ("a",))
    await backend.set("k", e)
    assert redis_errors() - before == 2
    for op in (backend.delete("k"), backend.clear_alias("a"), backend.clear()):
        with pytest.raises(BackendUnavailable):
            await op
    await rc.close()


async def test_redis_entry_from_another_version_is_a_miss(redis_url: str) -> None:
    rc = RedisClient(RedisConfig(url=redis_url))
    backend = RedisBackend(rc)
    await rc.client.set("gw:cache:e:k", b"garbage")
    assert await backend.get("k") is None
    await rc.close()


async def test_redis_backend_really_stores_in_redis(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                                    redis_url: str, http: Any) -> None:
    import redis.asyncio as aioredis

    cfg = cache_config(mock_upstream.url, backend="redis", ttl="1h")
    with_redis(cfg, redis_url)
    gw = await gateway_factory(cfg)
    assert gw.gateway.cache.backend.name == "redis"
    _, h, _ = await post(http, gw, chat_body("in redis", temperature=0))
    r = aioredis.Redis.from_url(redis_url)
    try:
        ttl = await r.ttl("gw:cache:e:" + h["x-gateway-cache-key"])
        assert 3500 < ttl <= 3600
        assert await r.sismember("gw:cache:a:up", h["x-gateway-cache-key"])
    finally:
        await r.aclose()
    # a second replica sharing the Redis sees the entry
    gw2 = await gateway_factory(cfg)
    _, h2, _ = await post(http, gw2, chat_body("in redis", temperature=0.0))
    assert h2["x-gateway-cache"] == "hit" and mock_upstream.calls == 1
