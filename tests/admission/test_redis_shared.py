"""Limits, budgets and key revocation shared through a real Redis by two gateways on different ports;
Redis going away (fail_open / fail_closed) and coming back."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tests.admission.conftest import (
    ADMIN_KEY,
    PRICING,
    TcpRelay,
    admin,
    chat,
    closed_port_url,
    metric_value,
    post_chat,
    quota_config,
    wait_for,
    with_key,
)
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, free_port


async def burst(http: aiohttp.ClientSession, gws: list[GatewayServer], per_gateway: int,
                body: dict[str, Any] | None = None, key: str = DEV_KEY) -> list[int]:
    calls = [post_chat(http, gw, body, key=key) for gw in gws for _ in range(per_gateway)]
    return [r[0] for r in await asyncio.gather(*calls)]


async def test_two_replicas_admit_exactly_the_limit(gateway_factory: GatewayFactory, redis_url: str,
                                                    http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(redis={"url": redis_url}), limits={"rpm": 10, "per_provider": {"mock": {"rpd": 25}}})
    a = await gateway_factory(cfg, port=free_port())
    b = await gateway_factory(cfg, port=free_port())
    assert a.url != b.url
    statuses = await burst(http, [a, b], 15)
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    # and again on a second limit: rpd 25 per provider, 10 more fit in a fresh minute window
    counters = a.gateway.admission.counters
    await counters.redis.client.delete(*[k async for k in counters.redis.client.scan_iter(match="*minute*")])
    statuses = await burst(http, [a, b], 10)
    assert statuses.count(200) == 10
    status, h, _ = await post_chat(http, b)
    assert status == 429 and h["x-ratelimit-limit-requests"] in ("10", "25")


async def test_token_window_shared_and_settled_in_redis(gateway_factory: GatewayFactory, redis_url: str,
                                                        http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(redis={"url": redis_url}), limits={"tpm": 10_000})
    a = await gateway_factory(cfg)
    b = await gateway_factory(cfg)
    used = 0
    for gw in (a, b, a):
        status, _, body = await post_chat(http, gw, chat(max_tokens=200))
        assert status == 200
        used += body["usage"]["total_tokens"]
    key = next(iter(a.gateway.pipeline.auth._by_hash.values()))

    async def settled() -> bool:
        rows = await b.gateway.admission.limit_status(key)  # read by limits' RedisStorage
        return any(r["metric"] == "tpm" and r["remaining"] == 10_000 - used for r in rows)

    await wait_for(settled)


async def test_budget_shared_not_overspent(gateway_factory: GatewayFactory, redis_url: str,
                                           http: aiohttp.ClientSession) -> None:
    # one echo call: ~3 prompt + 2 completion tokens at $1000/M = about $0.005; budget $0.02
    cfg = with_key(quota_config(redis={"url": redis_url}, pricing=PRICING),
                   budget={"usd": 0.02, "period": "daily"})
    a = await gateway_factory(cfg)
    b = await gateway_factory(cfg)
    admission = a.gateway.admission
    client = admission.counters.redis.client
    served = 0
    for _ in range(20):  # concurrent bursts at both replicas until the budget is spent
        statuses = await burst(http, [a, b], 8, chat(max_tokens=2))
        served += statuses.count(200)
        await wait_for(lambda: _no_reservations(client))  # every call settled
        s, _, body = await post_chat(http, b, chat(max_tokens=2))
        if s == 429:
            break
        served += 1
    assert s == 429 and body["error"]["code"] == "insufficient_quota"
    assert body["error"]["type"] == "insufficient_quota"
    key = next(iter(a.gateway.pipeline.auth._by_hash.values()))
    status = await admission.budget_status("key", key.id, key.name, key.budget)
    one_call = 0.002  # each echo call here: 1 prompt + 1 completion token at $1000/M
    assert abs(status["spend_usd"] - served * one_call) < 1e-9  # every served call was charged once
    assert status["spend_usd"] <= 0.02 + 2 * one_call  # at most one in-flight call per replica over
    assert status["remaining_usd"] == 0 or status["spend_usd"] >= 0.02 - 0.011  # refused only near the line


async def _no_reservations(client: aioredis.Redis) -> bool:
    return not [k async for k in client.scan_iter(match="gw:budget:*:reserved")]


async def test_fail_open_serves_and_counts(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(redis={"url": closed_port_url()}), limits={"rpm": 1})
    ping = metric_value("gateway_backend_errors_total", backend="redis", operation="ping")
    admit = metric_value("gateway_backend_errors_total", backend="redis", operation="admit")
    gw = await gateway_factory(cfg)
    assert metric_value("gateway_backend_errors_total", backend="redis", operation="ping") == ping + 1
    statuses = [(await post_chat(http, gw))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]  # the limit cannot be enforced; serving wins
    assert metric_value("gateway_backend_errors_total", backend="redis", operation="admit") == admit + 3
    async with http.get(gw.url + "/readyz") as r:
        assert r.status == 200  # fail_open: still ready


async def test_fail_closed_answers_503(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(redis={"url": closed_port_url(), "failure_mode": "fail_closed"}),
                   limits={"rpm": 100})
    gw = await gateway_factory(cfg)
    status, h, body = await post_chat(http, gw)
    assert status == 503 and body["error"]["code"] == "backend_unavailable" and h["Retry-After"] == "1"
    async with http.get(gw.url + "/readyz") as r:
        assert r.status == 503
    # keys without limits never touch Redis: they keep working
    cfg2 = quota_config(redis={"url": closed_port_url(), "failure_mode": "fail_closed"})
    gw2 = await gateway_factory(cfg2)
    assert (await post_chat(http, gw2))[0] == 200


async def test_recovers_when_redis_returns(gateway_factory: GatewayFactory, relay: tuple[TcpRelay, str],
                                           http: aiohttp.ClientSession) -> None:
    proxy, url = relay
    cfg = with_key(quota_config(redis={"url": url, "failure_mode": "fail_closed"}), limits={"rpm": 1000})
    gw = await gateway_factory(cfg)
    assert (await post_chat(http, gw))[0] == 200
    await proxy.stop()
    assert (await post_chat(http, gw))[0] == 503
    assert (await post_chat(http, gw))[0] == 503  # still down: each request's try is refused at once
    await proxy.start()

    async def served() -> bool:
        return (await post_chat(http, gw))[0] == 200

    await wait_for(served, timeout=5, interval=0.2)
    h = (await post_chat(http, gw))[1]
    assert int(h["x-ratelimit-remaining-requests"]) < 1000 - 1  # counting in Redis again


async def test_revoked_key_stops_on_every_replica_within_a_second(gateway_factory: GatewayFactory,
                                                                  redis_url: str, tmp_path: Any,
                                                                  http: aiohttp.ClientSession) -> None:
    db = {"url": f"sqlite:///{tmp_path}/shared.db"}
    cfg = quota_config(redis={"url": redis_url}, database=db)
    a = await gateway_factory(cfg)
    b = await gateway_factory(cfg)
    async with http.post(a.url + "/admin/keys", json={"name": "svc"}, headers=admin()) as r:
        assert r.status == 201
        created = await r.json()
    secret = created["key"]
    assert (await post_chat(http, b, key=secret))[0] == 200  # cached on b now
    async with http.patch(a.url + f"/admin/keys/{created['id']}", json={"disabled": True},
                          headers=admin()) as r:
        assert r.status == 200
    t0 = asyncio.get_running_loop().time()

    async def refused() -> bool:
        return (await post_chat(http, b, key=secret))[0] == 401

    await wait_for(refused, timeout=1.0, interval=0.02)
    assert asyncio.get_running_loop().time() - t0 < 1.0
    assert ADMIN_KEY  # (admin key never works as an API key)
    assert (await post_chat(http, b, key=ADMIN_KEY))[0] == 401
