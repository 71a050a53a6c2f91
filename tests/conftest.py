"""Shared fixtures: a real mock upstream and real gateway servers on free local ports."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mockupstream.server import STATE_KEY, MockState, build_mock_app
from proxy.app import build_app
from proxy.config import GatewayConfig, parse_config
from proxy.gateway import GATEWAY, Gateway
from proxy.http.serving import GatewayRunner
from proxy.providers.settings import MockBehaviour

DEV_KEY = "sk-test-dev"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_unavailable(reason: str) -> None:
    """Skip outside CI; under CI=true a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"required service unavailable under CI: {reason}")
    pytest.skip(reason)


@dataclass
class Server:
    url: str
    runner: web.AppRunner

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve(app: web.Application, port: int | None = None) -> Server:
    runner = GatewayRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=2)
    await runner.setup()
    port = port or free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return Server(f"http://127.0.0.1:{port}", runner)


@dataclass
class MockUpstream(Server):
    app: web.Application

    @property
    def state(self) -> MockState:
        return self.app[STATE_KEY]

    def configure(self, **behaviour: Any) -> None:
        self.state.behaviour = MockBehaviour.model_validate({**self.state.behaviour.model_dump(), **behaviour})

    @property
    def calls(self) -> int:
        return sum(self.state.calls.values())


@pytest.fixture
async def mock_upstream() -> AsyncIterator[MockUpstream]:
    app = build_mock_app(MockBehaviour(), api_key="sk-upstream")
    srv = await serve(app)
    yield MockUpstream(srv.url, srv.runner, app)
    await srv.close()


@dataclass
class GatewayServer(Server):
    app: web.Application

    @property
    def gateway(self) -> Gateway:
        return self.app[GATEWAY]

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def openai(self, key: str = DEV_KEY, **kw: Any) -> Any:
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, **kw)


def base_config(upstream_url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A small config: alias `demo` on the in-process mock, `up` on the mock upstream (OpenAI format)."""
    cfg: dict[str, Any] = {
        "providers": {"mock": {"type": "mock"}},
        "models": {"demo": {"route": [{"provider": "mock", "model": "mock-1"}]}},
        "keys": [{"name": "dev", "key": DEV_KEY, "models": ["*"]}],
        "logging": {"requests": True, "format": "json"},
    }
    if upstream_url:
        cfg["providers"]["up"] = {"type": "openai", "base_url": upstream_url + "/v1", "api_key": "sk-upstream"}
        cfg["models"]["up"] = {"route": [{"provider": "up", "model": "mock-1"}]}
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


GatewayFactory = Callable[..., Awaitable[GatewayServer]]


@pytest.fixture
async def gateway_factory(tmp_path: Any) -> AsyncIterator[GatewayFactory]:
    servers: list[GatewayServer] = []

    async def start(config: dict[str, Any] | GatewayConfig, port: int | None = None) -> GatewayServer:
        if isinstance(config, dict):
            config = dict(config)
            config.setdefault("database", {"url": f"sqlite:///{tmp_path}/ledger-{len(servers)}.db"})
            cfg = parse_config(config, env={})
        else:
            cfg = config
        app = build_app(cfg)
        srv = await serve(app, port)
        gs = GatewayServer(srv.url, srv.runner, app)
        servers.append(gs)
        return gs

    yield start
    for s in servers:
        await s.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def auth(key: str = DEV_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
