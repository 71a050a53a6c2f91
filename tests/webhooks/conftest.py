"""A real webhook receiver (aiohttp) that verifies every delivery with the official `standardwebhooks`
library, counts deliveries per `webhook-id`, and answers 500 / 410 / slowly on demand; and a gateway
config with short retry delays so retries happen within a test."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.admission.conftest import ADMIN_KEY, admin, quota_config
from tests.admission.conftest import pg_url as pg_url  # a fixture, registered by import
from tests.conftest import GatewayServer, Server, serve


@dataclass
class Delivery:
    id: str
    timestamp: str
    signature: str
    body: bytes
    at: float
    verified: bool

    @property
    def payload(self) -> dict[str, Any]:
        return orjson.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)  # a delivery verifies when one of these verifies it
    answers: list[int] = field(default_factory=list)  # statuses to answer next, in order; then 200
    slow: list[float] = field(default_factory=list)  # seconds to wait before answering, in order; then 0
    got: list[Delivery] = field(default_factory=list)
    url: str = ""
    retry_after: str | None = None

    @property
    def counts(self) -> Counter[str]:
        return Counter(d.id for d in self.got)

    def of_type(self, kind: str) -> list[Delivery]:
        return [d for d in self.got if d.payload["type"] == kind]

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for s in self.secrets:
            try:
                Webhook(s).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        self.got.append(Delivery(h.get("webhook-id", ""), h.get("webhook-timestamp", ""),
                                 h.get("webhook-signature", ""), body, time.monotonic(),
                                 self.verify(body, dict(h))))
        status = self.answers.pop(0) if self.answers else 200  # taken first: a timed-out attempt uses one up
        if self.slow:
            await asyncio.sleep(self.slow.pop(0))
        headers = {"Retry-After": self.retry_after} if self.retry_after and status in (429, 503) else None
        return web.Response(status=status, text="ok" if status < 300 else "no", headers=headers)

    async def wait_for(self, check: Callable[[Receiver], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not check(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: condition not met in {timeout}s; got {[d.payload for d in self.got]}")
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    srv: Server = await serve(app)
    rec.url = srv.url + "/hook"
    yield rec
    await srv.close()


FAST = {"allow_private_targets": True, "poll_interval": 0.05, "refresh_interval": 0.3, "timeout": 1,
        "retry_schedule": [0.3, 0.6, 1.2]}


def hook_config(upstream_url: str | None = None, webhooks: dict[str, Any] | None = None,
                **overrides: Any) -> dict[str, Any]:
    return quota_config(upstream_url, webhooks={**FAST, **(webhooks or {})}, **overrides)


async def admin_call(http: aiohttp.ClientSession, gw: GatewayServer, method: str, path: str,
                     body: Any = None, key: str = ADMIN_KEY) -> tuple[int, Any]:
    async with http.request(method, gw.url + path, json=body, headers=admin(key)) as r:
        return r.status, await r.json(content_type=None)


async def subscribe(http: aiohttp.ClientSession, gw: GatewayServer, rec: Receiver, events: list[str],
                    **fields: Any) -> dict[str, Any]:
    """A subscription through the admin API (waits for the database first); its secret goes to `rec`."""
    for _ in range(100):
        if gw.gateway.webhooks.registry.loaded:
            break
        await asyncio.sleep(0.05)
    status, data = await admin_call(http, gw, "POST", "/admin/webhooks", {"url": rec.url, "events": events, **fields})
    assert status == 201, data
    rec.secrets.append(data["secret"])
    return data  # type: ignore[no-any-return]
