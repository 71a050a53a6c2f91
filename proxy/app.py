"""Assembles the aiohttp application: stages into the pipeline, routes, middlewares, lifecycle."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from aiohttp import web

from . import accounting, batch, handlers, logs
from . import metrics as m
from .admin import add_admin_routes
from .auth import Authenticator
from .cache import install_cache
from .clientip import ClientGuard, ClientIPResolver
from .config import GatewayConfig
from .errors import INVALID_REQUEST, NOT_FOUND, SERVER, GatewayError
from .health import add_health_routes
from .logs import get_logger
from .metering import Meter
from .pipeline import NoAdmission, NoCache, Pipeline
from .providers import build_provider
from .resilience import Executor
from .routing import Router
from .state import GATEWAY, Gateway

log = get_logger("gateway")


@web.middleware
async def openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as OpenAI-format JSON; a bug becomes a 500 without a traceback."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except GatewayError as err:
        return err.response()
    except web.HTTPRequestEntityTooLarge as exc:
        return handlers.too_large(exc.max_size if hasattr(exc, "max_size") else 0).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            err = GatewayError(404, f"Unknown path {request.method} {request.path}.", NOT_FOUND,
                               code="unknown_url")
        elif exc.status == 405:
            err = GatewayError(405, f"Method {request.method} is not allowed on {request.path}.",
                               INVALID_REQUEST, code="method_not_allowed")
        else:
            err = GatewayError(exc.status, exc.reason, INVALID_REQUEST)
        return err.response()
    except Exception:
        log.exception("unhandled error", path=request.path)
        return GatewayError(500, "The gateway hit an internal error; it has been logged.", SERVER,
                            code="internal_error").response()


def build_gateway(cfg: GatewayConfig) -> Gateway:
    providers = {name: build_provider(name, p) for name, p in cfg.providers.items() if p.enabled}
    recorder = m.Recorder(cfg.metrics.enabled, cfg.metrics.key_label)
    router = Router(cfg)
    pipeline = Pipeline(
        auth=Authenticator(cfg.keys),
        admission=NoAdmission(),
        cache=NoCache(),
        router=router,
        executor=Executor(cfg, router, providers),
        meter=Meter(recorder, cfg.logging.requests),
    )
    gw = Gateway(cfg, providers, pipeline, recorder)
    install_cache(gw)  # swaps NoCache for the response cache only when `cache.enabled`
    accounting.install(gw)  # keys from the database, quotas, budgets, pricing, usage ledger
    router.attach(gw)  # breaker state shared through Redis when `redis:` is configured
    return gw


def build_app(cfg: GatewayConfig, gateway: Gateway | None = None) -> web.Application:
    gw = gateway or build_gateway(cfg)
    middlewares: list[Any] = [openai_errors]
    guard: ClientGuard | None = gw.extras.get("client_guard")
    resolver = ClientIPResolver(cfg.listen.trusted_networks) if cfg.listen.trusted_networks else None
    if guard is not None and (resolver is not None or guard.limit or guard.ip_rpm):
        middlewares.append(guard.middleware(resolver))  # inside openai_errors: its 429s leave as OpenAI JSON
    app = web.Application(middlewares=middlewares, client_max_size=cfg.listen.max_body_bytes)
    app[GATEWAY] = gw
    handlers.add_routes(app)
    app.router.add_get("/metrics", m.metrics_handler)
    add_admin_routes(app)
    batch.add_routes(app)
    add_health_routes(app)

    async def on_startup(_: web.Application) -> None:
        gw.extras["log_flusher"] = asyncio.create_task(logs.flush_periodically())
        await gw.start()
        # Everything allocated so far lives for the whole process: move it out of the collector's view
        # so full collections stop walking ~200k startup objects (60-80 ms pauses under load), and
        # collect the young generation less often (request garbage is freed by refcounting anyway).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)

    async def on_cleanup(_: web.Application) -> None:
        await gw.close()
        gw.extras["log_flusher"].cancel()
        logs.flush()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
