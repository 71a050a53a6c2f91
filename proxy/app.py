"""Assembles the aiohttp application: stages into the pipeline, routes, middlewares, lifecycle."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from aiohttp import web

from proxy.admission.budgets import EventBus
from proxy.admission.clientguard import ClientGuard
from proxy.admission.counters import Counters, LocalCounters
from proxy.admission.redis_counters import RedisCounters
from proxy.admission.signin import SigninThrottle
from proxy.admission.stage import AdmissionStage
from proxy.agents import AgentRegistry
from proxy.auth.authenticator import Authenticator
from proxy.auth.keystore import KeyStore
from proxy.auth.lastused import LastUsed
from proxy.auth.signing import SignatureVerifier
from proxy.cache import build_cache
from proxy.chains import ChainRunner
from proxy.config import GatewayConfig
from proxy.core.errors import INVALID_REQUEST, NOT_FOUND, SERVER, GatewayError
from proxy.gateway import GATEWAY, Gateway, Service
from proxy.http import anthropic_api, batch, chains, console_api, responses_api
from proxy.http import openai_api as handlers
from proxy.http.admin import add_admin_routes
from proxy.http.clientip import ClientIPResolver, guard_middleware
from proxy.http.console import assets as console_assets
from proxy.http.health import add_health_routes
from proxy.infra.asyncutil import cancel_and_wait
from proxy.infra.redis_client import RedisClient
from proxy.ledger import LedgerStore, LedgerWriter
from proxy.ledger.responses import StoredResponses
from proxy.ledger.service import LedgerService
from proxy.metering.ledger_hook import ledger_hook
from proxy.metering.meter import Meter
from proxy.metering.pricing import PriceTable
from proxy.observability import logs
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.optimize import Optimizer
from proxy.pipeline import Pipeline
from proxy.providers import build_provider
from proxy.providers.settings import Price
from proxy.resilience import Executor
from proxy.resilience.plans import Plans
from proxy.resilience.sync import BreakerSync
from proxy.routing.router import Router
from proxy.users.service import UsersService
from proxy.users.sessions import Sessions
from proxy.webhooks.service import WebhookService

log = get_logger("gateway")


def _error(request: web.Request, err: GatewayError) -> web.Response:
    return anthropic_api.error_response(err) if anthropic_api.owns(request.path) else err.response()


@web.middleware
async def openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as OpenAI-format JSON (in Anthropic's shape on the Messages API's paths); a bug
    becomes a 500 without a traceback."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except GatewayError as err:
        return _error(request, err)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(request, handlers.too_large(exc.max_size if hasattr(exc, "max_size") else 0))
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
        return _error(request, err)
    except Exception:
        log.exception("unhandled error", path=request.path)
        return _error(request, GatewayError(500, "The gateway hit an internal error; it has been logged.", SERVER,
                                            code="internal_error"))


def build_gateway(cfg: GatewayConfig) -> Gateway:
    """The composition root: every stage and service is built here, once, with its dependencies."""
    recorder = m.Recorder(cfg.metrics.enabled, cfg.metrics.key_label)
    redis = RedisClient(cfg.redis) if cfg.redis is not None else None
    providers = {name: build_provider(name, p) for name, p in cfg.providers.items() if p.enabled}
    prices = PriceTable.from_config(cfg)

    store = LedgerStore.from_config(cfg.database)
    writer = LedgerWriter.from_config(store, cfg.database)
    ledger = LedgerService(store, writer)
    keystore = KeyStore(store, redis)
    events = EventBus()
    counters: Counters = RedisCounters(redis) if redis is not None else LocalCounters()
    admission = AdmissionStage(cfg, prices, counters, store=store, events=events, recorder=recorder)
    cache = build_cache(cfg, redis, prices, recorder)

    plans = Plans(cfg)
    plans.bind(providers)
    router = Router(cfg, plans.alias_p95)
    meter = Meter(recorder, cfg.logging.requests, prices=prices)
    meter.unpriced = prices.count_unpriced
    meter.on_finish(admission.on_finish)
    meter.on_finish(ledger_hook(writer))
    # webhooks: invocation.* from the finish hook (one flag read per request while nobody subscribes to them),
    # budget.* and key.* from the event bus, breaker.* from this replica's own breaker transitions
    webhooks = WebhookService(cfg.webhooks, store, ready=lambda: ledger.ready)
    meter.on_finish(webhooks.producer.on_finish)
    events.subscribe(webhooks.producer.on_bus)
    plans.breakers.listen(webhooks.producer.breaker_transition)
    auth = Authenticator(cfg.keys, lookup=keystore.lookup, users=cfg.users, signatures=SignatureVerifier(redis))
    last_used = LastUsed(store.touch_keys, ready=lambda: ledger.ready)
    auth.on_success = last_used.seen
    pipeline = Pipeline(
        auth=auth,
        admission=admission,
        cache=cache,
        router=router,
        executor=Executor(cfg, plans, providers),
        meter=meter,
    )
    if cfg.ip_limits.rpm:
        pipeline.pre_auth.append(admission.admit_ip)
    agents = AgentRegistry(cfg, store, ready=lambda: ledger.ready)
    pipeline.expand_agent = agents.expand
    meter.on_finish(agents.on_finish)
    # failed-auth throttle per client IP, in the same counters as the quotas (shared through Redis)
    guard = ClientGuard(cfg.ip_limits.failed_auth_per_minute, counters, admission=admission,
                        ip_rpm=cfg.ip_limits.rpm, redis=redis, recorder=recorder)
    if guard.limit:
        pipeline.auth.on_failure = guard.failed
    async def agent_alias(model: str) -> str:
        return (await agents.resolve(model)).model

    chain_runner = ChainRunner(cfg.chains, pipeline, admission, prices, agent_alias, metrics=cfg.metrics.enabled)
    # prompt optimisation: agents' own policies, and the pipeline's hook for keys' and aliases' (always installed:
    # a key created through the admin API may ask for it at any time; without a policy the hook returns at once)
    def input_price(alias: str) -> Price | None:
        provider, model = admission.primary(alias)
        return prices.lookup(provider, model) if provider else None

    optimizer = Optimizer(cfg, input_price, ask=chain_runner.ask)
    agents.optimize = optimizer.apply
    pipeline.optimizer = optimizer
    users = UsersService(ledger, Sessions(store, redis, session_ttl=cfg.console.session_ttl), cfg.users)
    pipeline.auth.session_key = users.session_key  # a browser signed in to the console calls /v1/* too
    c = cfg.console
    signin = SigninThrottle(counters, per_ip=c.failed_signins_per_ip, per_account=c.failed_signins_per_account,
                            window=c.failed_signin_window, recorder=recorder)

    # started in this order, closed in reverse: Redis first up, last down; admission closes before the
    # ledger and Redis, settling what is owed; no readiness check on the database (config keys and the
    # proxying keep working without it, and failing every replica would turn a degraded ledger into an outage)
    services: list[Service] = []
    ready_checks = []
    if redis is not None:
        services.append(redis)
        ready_checks.append(redis.check)
    responses = StoredResponses(store, cfg.responses.store_ttl, ready=lambda: ledger.ready)
    # webhooks, last use and stored responses: closed (flushed) before the ledger
    services += [ledger, webhooks, keystore, last_used, users, admission, guard, cache, responses]
    b = cfg.breaker
    if redis is not None and b.shared and plans.breakers.breakers:
        services.append(BreakerSync(list(plans.breakers), redis, b.redis_prefix, b.sync_interval))
    return Gateway(cfg=cfg, providers=providers, pipeline=pipeline, recorder=recorder, plans=plans, prices=prices,
                   ledger=ledger, keystore=keystore, last_used=last_used, admission=admission, client_guard=guard,
                   events=events, cache=cache, webhooks=webhooks, users=users, signin_throttle=signin, redis=redis,
                   services=services, ready_checks=ready_checks, agents=agents, chains=chain_runner,
                   responses=responses)


def build_app(cfg: GatewayConfig, gateway: Gateway | None = None) -> web.Application:
    gw = gateway or build_gateway(cfg)
    middlewares: list[Any] = [openai_errors]
    guard = gw.client_guard
    resolver = ClientIPResolver(cfg.listen.trusted_networks) if cfg.listen.trusted_networks else None
    if resolver is not None or guard.limit or guard.ip_rpm:
        middlewares.append(guard_middleware(guard, resolver))  # inside openai_errors: its 429s leave as OpenAI JSON
    app = web.Application(middlewares=middlewares, client_max_size=cfg.listen.max_body_bytes)
    app[GATEWAY] = gw
    handlers.add_routes(app)
    anthropic_api.add_routes(app)
    responses_api.add_routes(app)
    app.router.add_get("/metrics", m.metrics_handler)
    add_admin_routes(app)
    console_api.add_routes(app)
    batch.add_routes(app)
    chains.add_routes(app)
    add_health_routes(app)
    console_assets.add_routes(app)

    log_flusher: list[asyncio.Task[None]] = []

    async def on_startup(_: web.Application) -> None:
        log_flusher.append(asyncio.create_task(logs.flush_periodically()))
        await gw.start()
        # Everything allocated so far lives for the whole process: move it out of the collector's view
        # so full collections stop walking ~200k startup objects (60-80 ms pauses under load), and
        # collect the young generation less often (request garbage is freed by refcounting anyway).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)

    async def on_cleanup(_: web.Application) -> None:
        await gw.close()
        await cancel_and_wait(*log_flusher)
        logs.flush()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
