"""Fixtures for fault-injection tests: several mock upstreams, a config builder, a raw HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from mockupstream.server import build_mock_app
from proxy.providers.settings import MockBehaviour
from tests.conftest import DEV_KEY, GatewayServer, MockUpstream, free_port, serve

MSG = [{"role": "user", "content": "ping pong"}]
FAST_RETRY = {"attempts": 3, "backoff": "5ms", "backoff_max": "20ms", "retry_after_max": "1s"}
FAST_TIMEOUTS = {"connect": 0.5, "first_token": 0.5, "idle": 0.3, "total": 3}


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[[int], Awaitable[list[MockUpstream]]]]:
    """`await upstreams(n)` -> n independent mock upstreams (OpenAI format, key sk-upstream)."""
    started: list[MockUpstream] = []

    async def make(n: int) -> list[MockUpstream]:
        out = []
        for _ in range(n):
            app = build_mock_app(MockBehaviour(), api_key="sk-upstream")
            srv = await serve(app)
            out.append(MockUpstream(srv.url, srv.runner, app))
        started.extend(out)
        return out

    yield make
    for u in started:
        await u.close()


def dead_url() -> str:
    """A local port nobody listens on: connection refused."""
    return f"http://127.0.0.1:{free_port()}"


def provider(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "openai", "base_url": url + "/v1", "api_key": "sk-upstream", **extra}


def config(providers: dict[str, str], models: dict[str, dict[str, Any]], **top: Any) -> dict[str, Any]:
    """providers: name -> upstream base URL; models: alias -> ModelAlias fields. Small timeouts and
    backoffs everywhere so fault tests stay fast."""
    cfg: dict[str, Any] = {
        "providers": {name: provider(url, timeout=FAST_TIMEOUTS) for name, url in providers.items()},
        "models": {},
        "keys": [{"name": "dev", "key": DEV_KEY, "models": ["*"]},
                 {"name": "researcher", "key": "sk-test-research", "team": "research"}],
        "logging": {"requests": True, "format": "json"},
        "cache": {"enabled": False},
        "breaker": {"failure_threshold": 3, "reset_timeout": "300ms"},
    }
    for alias, spec in models.items():
        spec = dict(spec)
        spec.setdefault("retry", FAST_RETRY)
        cfg["models"][alias] = spec
    cfg.update(top)
    return cfg


def route(*providers: str, model: str = "mock-1", **extra: Any) -> list[dict[str, Any]]:
    return [{"provider": p, "model": model, **extra} for p in providers]


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    raw: bytes
    elapsed: float

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)

    @property
    def error(self) -> dict[str, Any]:
        return self.json["error"]  # type: ignore[no-any-return]

    @property
    def attempts(self) -> int:
        return int(self.headers.get("x-gateway-attempts", "0"))

    @property
    def events(self) -> list[bytes]:
        return [e[6:] for e in self.raw.split(b"\n\n") if e.startswith(b"data: ")]


async def chat(gw: GatewayServer, model: str = "smart", *, stream: bool = False, key: str = DEV_KEY,
               headers: dict[str, str] | None = None, messages: list[dict[str, Any]] | None = None,
               timeout: float = 10, **body: Any) -> Reply:
    payload = {"model": model, "messages": messages or MSG, "stream": stream, **body}
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with aiohttp.ClientSession() as s, s.post(
            gw.base_url + "/chat/completions", json=payload, timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"Authorization": f"Bearer {key}", **(headers or {})}) as r:
        raw = await r.read()
        return Reply(r.status, r.headers.copy(), raw, loop.time() - t0)


async def health(gw: GatewayServer) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/health/providers") as r:
        return r.status, await r.json()


def breaker(gw: GatewayServer, provider: str, model: str = "mock-1") -> str:
    return gw.gateway.plans.breakers.get(provider, model).state


def gauge(provider: str, model: str = "mock-1") -> float:
    from prometheus_client import REGISTRY

    v = REGISTRY.get_sample_value("gateway_circuit_breaker_state",
                                  {"provider": provider, "upstream_model": model})
    return -1.0 if v is None else v


class LogSpy:
    """Stands in for the meter's logger: keeps each request's log fields."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None


def spy_logs(gw: GatewayServer) -> LogSpy:
    spy = LogSpy()
    gw.gateway.pipeline.meter.log_to(spy)
    return spy
