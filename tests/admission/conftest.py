"""Fixtures for quotas, budgets, keys and usage: a real Redis database per test, PostgreSQL, helpers.

REDIS_URL (default redis://127.0.0.1:6379) names the server; each run picks an empty database number
(1..15) and every test starts and ends with it flushed. Without Redis/PostgreSQL the tests that need them
skip, or fail under CI=true (`service_unavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio

from tests.conftest import DEV_KEY, GatewayServer, base_config, free_port, service_unavailable

ADMIN_KEY = "sk-test-admin"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
# mock-1 priced so a default echo call (a few prompt tokens + 20 completion tokens) costs cents
PRICING = {"mock-1": {"input": 1000.0, "output": 1000.0}}


def quota_config(upstream_url: str | None = None, **overrides: Any) -> dict[str, Any]:
    cfg = base_config(upstream_url, admin={"key": ADMIN_KEY}, **overrides)
    if "up" in cfg["models"]:
        cfg["models"]["up"]["retry"] = {"attempts": 1}
    return cfg


def with_key(cfg: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Give the `dev` key limits/budget/team..."""
    cfg["keys"] = [{**cfg["keys"][0], **fields}]
    return cfg


def admin(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(model: str = "demo", text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def post_chat(http: aiohttp.ClientSession, gw: GatewayServer, body: dict[str, Any] | None = None,
                    key: str = DEV_KEY) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with http.post(gw.base_url + "/chat/completions", json=body or chat(),
                         headers={"Authorization": f"Bearer {key}"}) as r:
        data = await r.json(content_type=None) if r.content_type == "application/json" else {}
        return r.status, dict(r.headers), data


async def burst_statuses(http: aiohttp.ClientSession, gws: list[GatewayServer], per_gateway: int,
                         body: dict[str, Any] | None = None, key: str = DEV_KEY) -> list[int]:
    """`per_gateway` concurrent chat calls at each gateway, all at once: their statuses."""
    calls = [post_chat(http, gw, body, key=key) for gw in gws for _ in range(per_gateway)]
    return [r[0] for r in await asyncio.gather(*calls)]


async def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        res = predicate()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def metric_value(_metric: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(_metric, labels) or 0.0


# ---------------------------------------------------------------- Redis
_DB: list[int] = []


def _run_db(client: redis.Redis) -> int:
    if not _DB:
        dbs = list(range(1, 16))
        random.shuffle(dbs)
        chosen = dbs[0]
        for db in dbs:
            c = redis.Redis.from_url(REDIS_URL, db=db)
            try:
                if c.dbsize() == 0:
                    chosen = db
                    break
            finally:
                c.close()
        _DB.append(chosen)
    return _DB[0]


@pytest.fixture
def redis_url() -> Iterator[str]:
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        probe.ping()
    except redis.RedisError as err:
        service_unavailable(f"Redis unreachable at {REDIS_URL}: {err}")
    db = _run_db(probe)
    probe.close()
    client = redis.Redis.from_url(REDIS_URL, db=db)
    client.flushdb()
    yield f"{REDIS_URL.rstrip('/')}/{db}"
    client.flushdb()
    client.close()


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


class TcpRelay:
    """A TCP forwarder in front of Redis that a test can stop and restart on the same port: Redis
    "going away" and "coming back" without touching the real server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in list(self.writers):
                w.close()
            await self.server.wait_closed()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, uw))

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()
                self.writers.discard(w)

        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))


@pytest.fixture
async def relay(redis_url: str) -> AsyncIterator[tuple[TcpRelay, str]]:
    from urllib.parse import urlsplit

    u = urlsplit(redis_url)
    r = TcpRelay(u.hostname or "127.0.0.1", u.port or 6379)
    await r.start()
    yield r, f"redis://127.0.0.1:{r.port}{u.path}"
    await r.stop()


# ---------------------------------------------------------------- PostgreSQL
@pytest.fixture
def pg_url() -> Iterator[str]:
    from tests.ledger.conftest import postgres_url_or_skip

    with postgres_url_or_skip("gw_quota") as url:
        yield url


# ---------------------------------------------------------------- a private redis-server
class RedisServer:
    """A redis-server of the test's own (no persistence, in a temp dir) that it can stop and start again
    on the same port: a real restart, stale pooled connections included."""

    def __init__(self, workdir: Any) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            await wait_for(lambda: _pings(client), timeout=5.0, interval=0.01)
        finally:
            await client.aclose()

    async def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.returncode is None:
            if kill:
                self.proc.kill()  # no goodbye: clients learn it from a reset connection
            else:
                self.proc.terminate()
            try:  # bounded: a full CI run once waited forever in this teardown
                await asyncio.wait_for(self.proc.wait(), 10.0)
            except TimeoutError:
                self.proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 5.0)
        self.proc = None

    async def restart(self, kill: bool = False) -> None:
        await self.stop(kill)
        await self.start()


async def _pings(client: Any) -> bool:
    try:
        return bool(await client.ping())
    except (redis.RedisError, OSError):
        return False


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
async def redis_server(tmp_path: Any) -> AsyncIterator[RedisServer]:
    if not os.access(REDIS_SERVER, os.X_OK):
        service_unavailable("redis-server binary not found")
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    await server.stop()
