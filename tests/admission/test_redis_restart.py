"""Redis restarting under two replicas: limits stay exact, and the cache, breaker sync and key revocation
keep working, without a spell of fail-open (a broken pooled connection is reconnected, not "Redis down")."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from proxy.config import RedisConfig
from proxy.infra.redis_client import RedisClient
from tests.admission.conftest import (
    RedisServer,
    admin,
    burst_statuses,
    chat,
    metric_value,
    post_chat,
    quota_config,
    wait_for,
    with_key,
)
from tests.conftest import GatewayFactory, MockUpstream, free_port


def redis_errors(*operations: str) -> float:
    return sum(metric_value("gateway_backend_errors_total", backend="redis", operation=op) for op in operations)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_limits_hold_across_redis_restarts(gateway_factory: GatewayFactory, redis_server: RedisServer,
                                                 http: aiohttp.ClientSession, kill: bool) -> None:
    cfg = with_key(quota_config(redis={"url": redis_server.url}), limits={"rpm": 20})
    a = await gateway_factory(cfg, port=free_port())
    b = await gateway_factory(cfg, port=free_port())
    statuses = await burst_statuses(http, [a, b], 20)
    assert statuses.count(200) == 20 and statuses.count(429) == 20
    for _ in range(3):
        await redis_server.restart(kill=kill)  # no persistence: the new server starts empty, a fresh window
        admits = redis_errors("admit")
        statuses = await burst_statuses(http, [a, b], 20)
        assert statuses.count(200) == 20 and statuses.count(429) == 20
        assert redis_errors("admit") == admits  # no call was admitted fail-open
    for gw in (a, b):
        assert gw.gateway.redis.up


async def test_cache_breaker_sync_and_revocation_survive_a_restart(gateway_factory: GatewayFactory,
                                                                   redis_server: RedisServer,
                                                                   mock_upstream: MockUpstream, tmp_path: Any,
                                                                   http: aiohttp.ClientSession) -> None:
    cfg = quota_config(mock_upstream.url, redis={"url": redis_server.url},
                       database={"url": f"sqlite:///{tmp_path}/shared.db"},
                       cache={"enabled": True, "backend": "redis"},
                       breaker={"failure_threshold": 2, "reset_timeout": "60s", "sync_interval": "50ms"})
    a = await gateway_factory(cfg, port=free_port())
    b = await gateway_factory(cfg, port=free_port())
    async with http.post(a.url + "/admin/keys", json={"name": "svc"}, headers=admin()) as r:
        assert r.status == 201
        created = await r.json()
    assert (await post_chat(http, b, chat("demo"), key=created["key"]))[0] == 200  # cached on b now

    await redis_server.restart()
    request_path = ("cache_get", "cache_set", "publish", "admit", "settle")
    before = redis_errors(*request_path)
    # the cache: stored through a's pool, found through b's, each replica's first operation since the restart
    status, h, _ = await post_chat(http, a, chat("up", "after the restart"))
    assert status == 200 and h["x-gateway-cache"] == "miss"
    status, h, _ = await post_chat(http, b, chat("up", "after the restart"))
    assert status == 200 and h["x-gateway-cache"] == "hit"
    assert mock_upstream.calls == 1
    # key revocation: published by a, b refuses the key at once (its database poll is 5 s away)
    async with http.patch(a.url + f"/admin/keys/{created['id']}", json={"disabled": True}, headers=admin()) as r:
        assert r.status == 200
    await wait_for(lambda: _refused(http, b, created["key"]), timeout=1.0, interval=0.02)
    assert redis_errors(*request_path) == before  # nothing on the request path went without Redis
    # breaker sync: failures on a open the breaker there, and b adopts it through the new server
    mock_upstream.configure(error_status=500)
    for n in range(2):
        assert (await post_chat(http, a, chat("up", f"failing {n}")))[0] >= 500
    assert a.gateway.plans.breakers.get("up", "mock-1").state == "open"
    await wait_for(lambda: b.gateway.plans.breakers.get("up", "mock-1").state == "open", timeout=2)
    for gw in (a, b):
        assert gw.gateway.redis.up


async def _refused(http: aiohttp.ClientSession, gw: Any, key: str) -> bool:
    return (await post_chat(http, gw, chat("demo"), key=key))[0] == 401


async def test_a_broken_pooled_connection_is_retried_once_not_an_outage(redis_server: RedisServer) -> None:
    """The command goes out again on a fresh connection; it ran once (the broken send never reached Redis)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    rc = RedisClient(RedisConfig(url=redis_server.url), probe_interval=60)
    await rc.start()
    try:
        pool = rc.client.connection_pool
        conn = await pool.get_connection()
        await pool.release(conn)
        send = conn.send_packed_command
        broken: list[bool] = []

        async def break_once(*args: Any, **kwargs: Any) -> Any:
            if not broken:
                broken.append(True)
                raise RedisConnectionError("Connection closed by server.")
            return await send(*args, **kwargs)

        conn.send_packed_command = break_once  # type: ignore[method-assign]
        errors = redis_errors("incr")
        assert await rc.call("incr", lambda: rc.client.incr("gw:test:once"), None) == 1
        assert broken == [True] and rc.up and redis_errors("incr") == errors
        # a connection error that persists is an outage: counted, down, the failure mode answers
        await redis_server.stop()
        assert await rc.call("incr", lambda: rc.client.incr("gw:test:once"), "fail-open") == "fail-open"
        assert not rc.up and not rc.skip and redis_errors("incr") == errors + 1  # refused: requests keep trying
        await redis_server.start()
        assert await rc.call("incr", lambda: rc.client.incr("gw:test:once"), None) == 1  # a fresh server
        assert rc.up  # the request that reached it marked Redis up again, without waiting for the probe
    finally:
        await rc.close()


async def test_a_timeout_skips_redis_without_retrying() -> None:
    """A Redis that does not answer (host or network gone) costs one timeout, not one per request."""
    import asyncio

    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rc = RedisClient(RedisConfig(url=f"redis://127.0.0.1:{port}/0"), op_timeout=0.1, probe_interval=60)
    try:
        await rc.start()
        assert not rc.up and rc.skip and len(accepted) == 1  # a timeout is not retried
        errors = redis_errors("get")
        assert await rc.call("get", lambda: rc.client.get("x"), "fail-open") == "fail-open"
        assert await rc.quietly("get", lambda: rc.client.get("x"), "skipped") == "skipped"
        assert len(accepted) == 1 and redis_errors("get") == errors + 1  # not even tried
    finally:
        await rc.close()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()
