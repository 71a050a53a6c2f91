"""Cache test fixtures: gateways with the cache on, a real Redis database per run, small helpers."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis

from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream, base_config, service_unavailable

ADMIN_KEY = "sk-test-admin"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


def cache_config(upstream_url: str, **cache: Any) -> dict[str, Any]:
    cfg = base_config(upstream_url, cache={"enabled": True, **cache}, admin={"key": ADMIN_KEY})
    cfg["models"]["up"]["retry"] = {"attempts": 1}  # one upstream call per request: counts stay exact
    return cfg


def with_redis(cfg: dict[str, Any], url: str, **redis_cfg: Any) -> dict[str, Any]:
    cfg["redis"] = {"url": url, **redis_cfg}
    # breaker sharing (on by default with `redis:`) is not under test here; its background sync task
    # can miss a cancellation on Python 3.11 (wait_for) and hang the gateway's shutdown
    cfg["breaker"] = {"shared": False}
    return cfg


def chat_body(text: str = "hello cache", **extra: Any) -> dict[str, Any]:
    return {"model": "up", "messages": [{"role": "user", "content": text}], **extra}


async def post(http: aiohttp.ClientSession, gw: GatewayServer, body: dict[str, Any],
               headers: dict[str, str] | None = None, path: str = "/chat/completions",
               key: str = DEV_KEY) -> tuple[int, dict[str, str], bytes]:
    async with http.post(gw.base_url + path, json=body,
                         headers={"Authorization": f"Bearer {key}", **(headers or {})}) as r:
        return r.status, dict(r.headers), await r.read()


def admin(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def cached_gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    return await gateway_factory(cache_config(mock_upstream.url))


# ---------------------------------------------------------------- Redis
def _pick_db(client: redis.Redis) -> int:
    """An empty database number, so a run never mixes with (or flushes) another run's data."""
    dbs = list(range(1, 16))
    random.shuffle(dbs)
    for db in dbs:
        c = redis.Redis.from_url(REDIS_URL, db=db)
        try:
            if c.dbsize() == 0:
                return db
        finally:
            c.close()
    return dbs[0]


@pytest.fixture(scope="session")
def redis_db() -> Iterator[str]:
    """URL of a Redis database of its own for this test run; flushed at the end."""
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        probe.ping()
    except redis.RedisError as err:
        service_unavailable(f"redis not reachable at {REDIS_URL}: {err}")
    db = _pick_db(probe)
    probe.close()
    url = urlsplit(REDIS_URL)._replace(path=f"/{db}").geturl()
    yield url
    c = redis.Redis.from_url(url)
    c.flushdb()
    c.close()


@pytest.fixture
def redis_url(redis_db: str) -> Iterator[str]:
    """The run's database, emptied after each test."""
    yield redis_db
    c = redis.Redis.from_url(redis_db)
    c.flushdb()
    c.close()
