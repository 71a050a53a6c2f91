"""GET /health/providers: a cheap probe per provider plus what live traffic says about each deployment.

Probes (`Provider.probe()`, e.g. GET /models) run concurrently, at most one round at a time, and
the report is cached for a few seconds so monitors polling this endpoint cannot hammer upstreams.
Breaker state, in-flight count, latency and the last traffic error come from the router's live state
at each call. No secrets: errors are reported as type, status and a redacted message.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from proxy.core.errors import UpstreamError
from proxy.gateway import GATEWAY
from proxy.infra.asyncutil import SingleFlight
from proxy.resilience.fallback import sanitize

if TYPE_CHECKING:
    from proxy.gateway import Gateway
    from proxy.providers.base import Provider

CACHE_SECONDS = 5.0
PROBE_TIMEOUT = 5.0


class HealthProber:
    """Probes every provider at most once per `ttl`, one round at a time, for GET /health/providers."""

    def __init__(self, providers: dict[str, Provider], ttl: float = CACHE_SECONDS,
                 timeout: float = PROBE_TIMEOUT) -> None:
        self.providers = providers
        self.ttl = ttl
        self.timeout = timeout
        self._probes: dict[str, dict[str, Any]] = {}
        self._at = -1e9
        # one round at a time; a monitor hanging up does not cancel the round others are waiting for
        self._round: SingleFlight[dict[str, dict[str, Any]]] = SingleFlight(cancel_orphans=False)

    async def probes(self) -> dict[str, dict[str, Any]]:
        if time.monotonic() - self._at < self.ttl:
            return self._probes
        self._probes, _ = await self._round.run(None, self._probe_all)
        self._at = time.monotonic()
        return self._probes

    async def _probe_all(self) -> dict[str, dict[str, Any]]:
        names = list(self.providers)
        results = await asyncio.gather(*(self._probe(n) for n in names))
        return dict(zip(names, results, strict=True))

    async def _probe(self, name: str) -> dict[str, Any]:
        provider = self.providers[name]
        t0 = time.perf_counter()
        error: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(self.timeout):
                await provider.probe()
        except UpstreamError as err:
            error = {"type": err.kind, "status": err.upstream_status or err.status,
                     "message": sanitize(err.message, err.kind)}
        except TimeoutError:
            error = {"type": "timeout", "status": None, "message": f"no answer within {self.timeout:g}s"}
        except Exception as err:  # a provider bug must not break the health page
            error = {"type": "error", "status": None, "message": type(err).__name__}
        return {"healthy": error is None, "latency_ms": round((time.perf_counter() - t0) * 1000, 2),
                "error": error, "checked_at": datetime.now(UTC).isoformat()}


async def providers_health(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    probes = await request.app[PROBER].probes()
    deployments = gw.plans.snapshot()
    out: dict[str, Any] = {}
    healthy = unhealthy = 0
    for name, pcfg in gw.cfg.providers.items():
        entry: dict[str, Any] = {"type": pcfg.type, "enabled": pcfg.enabled}
        if not pcfg.enabled:
            entry["disabled_reason"] = pcfg.disabled_reason
            out[name] = entry
            continue
        probe = probes.get(name) or {"healthy": None}
        deps = [d for key, d in deployments.items() if key.split("/", 1)[0] == name]
        open_breakers = [d["model"] for d in deps if d["breaker"]["state"] == "open"]
        last = max((d["last_error"] for d in deps if d["last_error"]), key=lambda e: e["at"], default=None)
        ok = bool(probe.get("healthy")) and not open_breakers
        healthy += ok
        unhealthy += not ok
        entry.update({
            "healthy": ok,
            "probe": probe,
            "latency_ms": probe.get("latency_ms"),
            "breaker": "open" if open_breakers else _worst(deps),
            "last_error": _with_time(last),
            "deployments": [{**d, "last_error": _with_time(d["last_error"])} for d in deps],
        })
        out[name] = entry
    status = "ok" if not unhealthy else ("degraded" if healthy else "down")
    body = {"status": status, "providers": out}
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        status=503 if status == "down" else 200)


def _worst(deps: list[dict[str, Any]]) -> str:
    states = {d["breaker"]["state"] for d in deps}
    return "half-open" if "half-open" in states else "closed"


def _with_time(err: dict[str, Any] | None) -> dict[str, Any] | None:
    if err is None:
        return None
    return {**err, "at": datetime.fromtimestamp(err["at"], UTC).isoformat()}


def add_health_routes(app: web.Application) -> None:
    app[PROBER] = HealthProber(app[GATEWAY].providers)
    app.router.add_get("/health/providers", providers_health)


PROBER: web.AppKey[HealthProber] = web.AppKey("health_prober", HealthProber)
