"""The running gateway: config, providers, pipeline stages and background services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from proxy.config import GatewayConfig
from proxy.observability import metrics as m
from proxy.pipeline import Pipeline
from proxy.providers.base import Provider


class Service(Protocol):
    """Something with a lifecycle (ledger writer, Redis client, health prober...)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


Check = Callable[[], Awaitable[str | None]]  # returns a problem description, None when fine


class Gateway:
    def __init__(self, cfg: GatewayConfig, providers: dict[str, Provider], pipeline: Pipeline,
                 recorder: m.Recorder) -> None:
        self.cfg = cfg
        self.providers = providers
        self.pipeline = pipeline
        self.recorder = recorder
        self.services: list[Service] = []
        self.ready_checks: list[Check] = []
        self.ready = False
        self.extras: dict[str, Any] = {}  # stage objects other endpoints need (ledger, cache, breakers...)
        # kind -> its gauge cell's inc: not metrics.Children + Gauge.inc, which (two calls a request, with
        # the label tuple built and Gauge's own checks) measured 11k instructions of ~1,000k a request
        self._in_flight: dict[str, Any] = {}

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
