"""The running gateway: config, providers, the pipeline, and the services its endpoints use.

Built once by the composition root (`app.build_gateway`); every attribute is typed, and nothing is
added to it after construction. HTTP handlers reach it as `request.app[GATEWAY]`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from proxy.admission.budgets import EventBus
from proxy.admission.clientguard import ClientGuard
from proxy.admission.signin import SigninThrottle
from proxy.admission.stage import AdmissionStage
from proxy.agents import AgentRegistry
from proxy.auth.keystore import KeyStore
from proxy.auth.lastused import LastUsed
from proxy.cache.stage import ResponseCache
from proxy.chains import ChainRunner
from proxy.config import GatewayConfig
from proxy.infra.redis_client import RedisClient
from proxy.ledger import LedgerStore, LedgerWriter
from proxy.ledger.responses import StoredResponses
from proxy.ledger.service import LedgerService
from proxy.metering.pricing import PriceTable
from proxy.observability import metrics as m
from proxy.pipeline import Pipeline
from proxy.providers.base import Provider
from proxy.resilience.plans import Plans
from proxy.users.service import UsersService
from proxy.webhooks.service import WebhookService


class Service(Protocol):
    """Something with a lifecycle (ledger writer, Redis client, health prober...)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


Check = Callable[[], Awaitable[str | None]]  # returns a problem description, None when fine


@dataclass(eq=False)
class Gateway:
    cfg: GatewayConfig
    providers: dict[str, Provider]
    pipeline: Pipeline
    recorder: m.Recorder
    plans: Plans  # every alias's deployments, breakers and live state
    prices: PriceTable
    ledger: LedgerService
    keystore: KeyStore
    last_used: LastUsed
    admission: AdmissionStage
    client_guard: ClientGuard
    events: EventBus
    cache: ResponseCache
    webhooks: WebhookService
    users: UsersService  # console users, sign-in sessions
    signin_throttle: SigninThrottle  # failed console sign-ins per client IP and per account
    agents: AgentRegistry  # `model: "agent/<name>"`: gateway.yaml's and the admin API's agents
    chains: ChainRunner  # POST /v1/gateway/chains, `model: "chain/<name>"`
    responses: StoredResponses  # the Responses API's stored responses (TTL, purge)
    redis: RedisClient | None = None
    services: list[Service] = field(default_factory=list)  # started in order, closed in reverse
    ready_checks: list[Check] = field(default_factory=list)
    ready: bool = False
    # kind -> its gauge cell's inc: not metrics.Children + Gauge.inc, which (two calls a request, with
    # the label tuple built and Gauge's own checks) measured 11k instructions of ~1,000k a request
    _in_flight: dict[str, Any] = field(default_factory=dict)

    @property
    def ledger_store(self) -> LedgerStore:
        return self.ledger.store

    @property
    def ledger_writer(self) -> LedgerWriter:
        return self.ledger.writer

    def in_flight(self, kind: str, delta: int) -> None:
        if self.recorder.enabled:
            inc = self._in_flight.get(kind)
            if inc is None:
                inc = self._in_flight[kind] = m.IN_FLIGHT.labels(kind)._value.inc
            inc(delta)

    async def start(self) -> None:
        for p in self.providers.values():
            await p.start()
        for s in self.services:
            await s.start()
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        for s in reversed(self.services):
            await s.close()
        for p in self.providers.values():
            await p.close()

    async def readiness(self) -> list[str]:
        if not self.ready:
            return ["starting or shutting down"]
        problems = []
        for check in self.ready_checks:
            if (problem := await check()) is not None:
                problems.append(problem)
        return problems


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
