"""Circuit breakers: threshold, reset timeout, the single half-open probe, metrics, health, and
state shared across replicas through Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from proxy.core.errors import upstream_error_from_status
from proxy.providers.settings import BreakerConfig
from proxy.resilience.breakers import CLOSED, HALF_OPEN, OPEN, Breaker
from tests.conftest import GatewayFactory, service_unavailable
from tests.resilience.conftest import breaker, chat, config, gauge, health, route

ERR = upstream_error_from_status(500, "boom")


def make(threshold: int = 2, reset: float = 0.05) -> Breaker:
    return Breaker(f"unit-{uuid.uuid4().hex[:6]}", "m", BreakerConfig(failure_threshold=threshold,
                                                                      reset_timeout=reset))


async def test_state_machine_open_half_open_closed() -> None:
    b = make()
    assert b.allow() and b.state == CLOSED
    b.record_failure(ERR)
    assert b.state == CLOSED and b.failures == 1
    b.record_success()  # consecutive failures: a success resets the count
    assert b.failures == 0
    b.record_failure(ERR)
    b.record_failure(ERR)
    assert b.state == OPEN and not b.allow()
    assert gauge(b.provider, "m") == 1
    await asyncio.sleep(0.06)
    assert b.allow() and b.state == HALF_OPEN  # the probe
    assert gauge(b.provider, "m") == 2
    assert not b.allow()  # one probe at a time
    b.record_success()
    assert b.state == CLOSED and b.allow() and gauge(b.provider, "m") == 0


async def test_failed_probe_reopens_and_released_probe_frees_the_slot() -> None:
    b = make(threshold=1)
    b.record_failure(ERR)
    assert b.state == OPEN
    await asyncio.sleep(0.06)
    assert b.allow() and not b.allow()
    b.release()  # the probe's client went away: another request may probe
    assert b.allow()
    b.record_failure(ERR)
    assert b.state == OPEN and not b.allow()  # reset timeout starts again


def test_late_result_of_a_call_started_before_opening_is_ignored() -> None:
    b = make(threshold=1, reset=30)
    b.record_failure(ERR)
    b.record_success()  # a slow call that was already in flight when the breaker opened
    assert b.state == OPEN


def test_storage_marks_transitions_for_the_redis_mirror() -> None:
    b = make(threshold=1, reset=30)
    s = b.storage
    b.record_failure(ERR)
    assert s.dirty and s._state == OPEN and s.opened_ts > 0
    s.dirty = False
    b.cb.half_open()
    assert not s.dirty  # half-open is per replica


async def test_breaker_opens_skips_and_recovers_through_the_server(gateway_factory: GatewayFactory,  # type: ignore[no-untyped-def]
                                                                 upstreams) -> None:
    bad, good = await upstreams(2)
    bad.configure(error_status=500)
    name = f"p{uuid.uuid4().hex[:6]}"
    gw = await gateway_factory(config({name: bad.url, "b": good.url}, {
        "smart": {"route": route(name, "b")},  # priority: `name` first while it is healthy
    }, breaker={"failure_threshold": 2, "reset_timeout": "300ms"}))
    for _ in range(2):
        r = await chat(gw)
        assert r.status == 200 and r.attempts == 2 and r.headers["x-gateway-provider"] == "b"
    assert breaker(gw, name) == "open" and gauge(name) == 1 and bad.calls == 2
    status, report = await health(gw)
    assert status == 200 and report["status"] == "degraded"
    p = report["providers"][name]
    assert p["breaker"] == "open" and not p["healthy"] and p["last_error"]["type"] == "server"
    # open: skipped without a try
    chats = bad.state.calls  # the health probe above also called GET /v1/models on it
    r = await chat(gw)
    assert r.attempts == 1 and chats["/v1/chat/completions"] == 2
    # after the reset timeout one probe goes through; the upstream healed, so the breaker closes
    bad.configure(error_status=None)
    await asyncio.sleep(0.35)
    r = await chat(gw)
    assert r.headers["x-gateway-provider"] == name and chats["/v1/chat/completions"] == 3
    assert breaker(gw, name) == "closed" and gauge(name) == 0


async def test_single_probe_while_half_open(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    slow, good = await upstreams(2)
    name = f"p{uuid.uuid4().hex[:6]}"
    gw = await gateway_factory(config({name: slow.url, "b": good.url}, {"smart": {"route": route(name, "b")}},
                                      breaker={"failure_threshold": 1, "reset_timeout": "100ms"}))
    gw.gateway.plans.breakers.get(name, "mock-1").open_now()
    await asyncio.sleep(0.12)
    slow.configure(latency=0.15)
    replies = await asyncio.gather(*(chat(gw) for _ in range(5)))
    assert all(r.status == 200 for r in replies)
    assert slow.calls == 1  # only the probe; the four others went to b
    assert sorted(r.headers["x-gateway-provider"] for r in replies) == ["b"] * 4 + [name]
    assert breaker(gw, name) == "closed"


@pytest.fixture
async def redis_url() -> str:
    import redis.asyncio as aioredis

    url = "redis://127.0.0.1:6379/0"
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        await client.ping()
    except Exception as err:  # any failure means "no Redis here"
        service_unavailable(f"redis at {url}: {err}")
    finally:
        await client.aclose()
    return url


async def test_breaker_state_is_shared_across_replicas(gateway_factory: GatewayFactory, upstreams,  # type: ignore[no-untyped-def]
                                                       redis_url: str) -> None:
    bad, good = await upstreams(2)
    bad.configure(error_status=500)
    prefix = f"test:{uuid.uuid4().hex}:"
    cfg = config({"a": bad.url, "b": good.url}, {"smart": {"route": route("a", "b")}},
                 redis={"url": redis_url},
                 breaker={"failure_threshold": 3, "reset_timeout": "30s", "sync_interval": "50ms",
                          "redis_prefix": prefix})
    one, two = await gateway_factory(cfg), await gateway_factory(cfg)
    # failures are counted across replicas: 2 on one + 1 on two reach the threshold of 3
    await chat(one)
    await chat(one)
    await asyncio.sleep(0.2)
    assert breaker(one, "a") == "closed"
    await chat(two)
    assert breaker(two, "a") == "open"
    for _ in range(40):  # the other replica adopts the open state through Redis
        if breaker(one, "a") == "open":
            break
        await asyncio.sleep(0.05)
    assert breaker(one, "a") == "open"
    calls = bad.calls
    r = await chat(one)
    assert r.status == 200 and r.attempts == 1 and bad.calls == calls  # skipped on replica one too
    # closing is shared as well
    two.gateway.plans.breakers.get("a", "mock-1").cb.close()
    for _ in range(40):
        if breaker(one, "a") == "closed":
            break
        await asyncio.sleep(0.05)
    assert breaker(one, "a") == "closed"
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    async for key in client.scan_iter(prefix + "*"):
        await client.delete(key)
    await client.aclose()


async def test_unreachable_redis_leaves_breakers_local(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    bad, good = await upstreams(2)
    bad.configure(error_status=500)
    gw = await gateway_factory(config({"a": bad.url, "b": good.url}, {"smart": {"route": route("a", "b")}},
                                      redis={"url": f"redis://127.0.0.1:{free_port()}/0"},
                                      breaker={"failure_threshold": 2, "sync_interval": "20ms"}))
    for _ in range(3):
        r = await chat(gw)
        assert r.status == 200
    await asyncio.sleep(0.1)
    assert breaker(gw, "a") == "open" and bad.calls == 2


def test_provider_breaker_overrides_the_default() -> None:
    from proxy.config import parse_config
    from proxy.resilience.plans import Plans

    cfg = parse_config({
        "providers": {"strict": {"type": "mock", "breaker": {"failure_threshold": 1, "reset_timeout": "5s"}},
                      "lax": {"type": "mock"}},
        "models": {"m": {"route": [{"provider": "strict", "model": "x"}, {"provider": "lax", "model": "x"}]}},
        "breaker": {"failure_threshold": 7, "reset_timeout": "1m"},
    }, env={})
    board = Plans(cfg).breakers
    strict, lax = board.get("strict", "x"), board.get("lax", "x")
    assert (strict.cb.fail_max, strict.reset_timeout) == (1, 5.0)
    assert (lax.cb.fail_max, lax.reset_timeout) == (7, 60.0)
    assert len(list(board)) == 2
