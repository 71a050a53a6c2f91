"""The response-cache stage: lookup before routing, store after a complete answer, coalescing between.

Implements `pipeline.CacheStage`. Always built, because an alias or a key (also one created later
through the admin API) may turn the cache on while the global `cache:` default is off. Per request,
`lookup` decides the plan (key, TTL, store or not) from the global default, the alias and key
policies and the request's cache headers, and leaves it in `ctx.notes` for `complete`/`stream`. A
request the cache is off for leaves no plan: nothing is hashed, looked up, stored or coalesced, and
no `x-gateway-cache` header is sent (`bypass` when an `enabled: false` policy switched it off).

Money: a hit costs the key nothing (`ctx.provider` stays empty so metering prices nothing) and
`ctx.saved_usd` gets what the cached usage would have cost (`count_saving`), priced by the same
`PriceTable.cost` that metering prices live calls with. A request that shared another's in-flight call is
treated the same way: it caused no upstream spend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from proxy.cache import controls
from proxy.cache.accumulate import CACHEABLE_FINISH, Accumulator
from proxy.cache.backend import Backend, Entry
from proxy.cache.coalesce import Flights, StreamFlight
from proxy.cache.keys import cache_key, route_fingerprint
from proxy.cache.replay import replay_chunks
from proxy.config import GatewayConfig
from proxy.core.context import RequestContext
from proxy.infra import sse
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.providers.base import ChunkStream, Complete, Completion, OpenStream, Usage

log = get_logger("gateway.cache")
NOTE = "cache"


BYPASS = -1.0  # `_policy_ttl`: an `enabled: false` policy turned the cache off for this request


@dataclass(slots=True, frozen=True)
class AliasPolicy:
    enabled: bool | None  # the alias's `cache:` section: True on, False off, None = no section (the default)
    ttl: float | None  # explicit per-alias TTL, None = the global default
    fingerprint: str


@dataclass(slots=True)
class Plan:
    key: str
    ttl: float
    store: bool
    join: bool  # may share an identical in-flight call (not with Cache-Control: no-cache)
    aliases: tuple[str, ...]


class Prices(Protocol):
    """What the cache needs of metering's PriceTable (passed in by the composition root)."""

    def cost(self, provider: str, model: str, usage: Usage) -> float: ...


class ResponseCache:
    def __init__(self, cfg: GatewayConfig, backend: Backend, prices: Prices, recorder: m.Recorder) -> None:
        self.cfg = cfg
        self.enabled = cfg.cache.enabled  # the global default
        self.configured = cfg.cache_configured()  # on anywhere in gateway.yaml (database keys aside)
        self.default_ttl = cfg.cache.ttl
        self.backend = backend
        self.prices = prices
        self.rec = recorder
        self.flights = Flights()
        self._counter = m.Children()  # hit/miss counters per alias
        self.aliases: dict[str, AliasPolicy] = {}
        for name, alias in cfg.models.items():
            pol = alias.cache
            self.aliases[name] = AliasPolicy(None if pol is None else pol.enabled, pol.ttl if pol else None,
                                             route_fingerprint(cfg, name))
        # with the default off and no alias turning it on, only a key's own `cache:` can: the common
        # request then leaves `lookup` after two attribute reads
        self.aliases_only_off = not self.enabled and all(a.enabled is not True for a in self.aliases.values())

    # ------------------------------------------------------------------ lifecycle (Gateway service)
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.flights.cancel_all()
        await self.backend.close()

    # ------------------------------------------------------------------ keys
    def key_for(self, kind: str, alias: str, served_alias: str, body: dict[str, Any]) -> str | None:
        pol = self.aliases.get(served_alias)
        if pol is None:
            return None
        return cache_key(kind, alias, served_alias, pol.fingerprint, body)

    # ------------------------------------------------------------------ CacheStage
    async def lookup(self, ctx: RequestContext) -> Completion | None:
        if self.aliases_only_off and (ctx.key is None or ctx.key.cache is None):
            return None
        served = ctx.served_alias or ctx.alias
        ttl = self._policy_ttl(ctx, served)
        if ttl is None:
            return None
        pol = self.aliases.get(served)
        if ttl == BYPASS or pol is None:
            return self._bypass(ctx)
        ctl = controls.parse(ctx.request_headers)
        if ctl.warnings:
            ctx.headers["x-gateway-warning"] = "; ".join(ctl.warnings)
        key = cache_key(ctx.kind, ctx.alias, served, pol.fingerprint, ctx.body)
        if key is None:
            return self._bypass(ctx)
        if ctl.ttl is not None:
            ttl = min(ttl, ctl.ttl)
        ctx.cache_key = key
        ctx.headers["x-gateway-cache-key"] = key
        aliases = (ctx.alias,) if served == ctx.alias else (ctx.alias, served)
        ctx.notes[NOTE] = Plan(key, ttl, not ctl.no_store and ttl > 0, not ctl.no_cache, aliases)
        if ctl.no_cache:
            return self._bypass(ctx)
        entry = await self.backend.get(key)
        now = time.time()
        if entry is None or (ctl.max_age is not None and now - entry.created > ctl.max_age):
            ctx.cache_status = "miss"
            ctx.headers["x-gateway-cache"] = "miss"
            if self.rec.enabled:
                self._counter(m.CACHE_MISSES, ctx.alias).inc()
            return None
        ctx.cache_status = "hit"
        ctx.headers["x-gateway-cache"] = "hit"
        ctx.headers["x-gateway-cache-age"] = str(max(0, int(now - entry.created)))
        c = entry.completion
        ctx.notes["cache_provider"] = entry.provider
        if self.rec.enabled:
            self._counter(m.CACHE_HITS, ctx.alias).inc()
        count_saving(ctx, self.prices, self.rec, c.usage, entry.provider, entry.upstream_model)
        return c

    async def complete(self, ctx: RequestContext, call: Complete) -> Completion:
        plan: Plan | None = ctx.notes.get(NOTE)
        if plan is None:
            return await call()

        async def lead() -> tuple[Completion, str, str]:
            # runs in its own task: a leader that disconnects does not stop it for the others
            c = await call()
            await self._store(ctx, plan, c)
            return c, ctx.provider, ctx.upstream_model

        (c, provider, model), shared = await self.flights.run(("c", plan.key, plan.store), lead, plan.join)
        if shared:
            settle_shared(ctx, self.prices, self.rec, c.usage, provider, model)
        return c

    async def stream(self, ctx: RequestContext, open_stream: OpenStream) -> tuple[ChunkStream, bytes | None]:
        plan: Plan | None = ctx.notes.get(NOTE)
        if plan is None:
            return await open_stream()
        include_usage = bool((ctx.body.get("stream_options") or {}).get("include_usage"))

        async def on_complete(flight: StreamFlight) -> None:
            await self._store_stream(flight, plan)

        flight, shared = self.flights.stream(("s", plan.key, plan.store, include_usage), open_stream,
                                             on_complete if plan.store else None, plan.join)
        if not shared:
            flight.owner = ctx
            return await flight.join()

        def on_end(f: StreamFlight) -> None:
            owner = f.owner
            if f.usage is not None and owner is not None:
                settle_shared(ctx, self.prices, self.rec, f.usage, owner.provider, owner.upstream_model)

        mark_coalesced(ctx, self.rec)
        return await flight.join(on_end)

    def replay(self, ctx: RequestContext, hit: Completion) -> list[bytes]:
        data = hit.data if hit.data is not None else orjson.loads(hit.body)
        return replay_chunks(data, bool((ctx.body.get("stream_options") or {}).get("include_usage")))

    # ------------------------------------------------------------------ admin
    async def invalidate(self, key: str) -> bool:
        return await self.backend.delete(key)

    async def clear_alias(self, alias: str) -> int:
        return await self.backend.clear_alias(alias)

    async def clear(self) -> int:
        return await self.backend.clear()

    # ------------------------------------------------------------------ internals
    def _policy_ttl(self, ctx: RequestContext, served: str) -> float | None:
        """The TTL the global default, alias and key policies allow: None when nothing turns the cache
        on for this request, BYPASS when a policy (alias asked for, alias serving, key) says
        `enabled: false` — an explicit off wins over any on.

        Explicit TTLs combine to the shortest; without any, the global `cache.ttl` applies.
        """
        on = self.enabled
        ttl: float | None = None
        for pol in (self.aliases.get(ctx.alias), self.aliases.get(served) if served != ctx.alias else None):
            if pol is None or pol.enabled is None:
                continue
            if not pol.enabled:
                return BYPASS
            on = True
            if pol.ttl is not None:
                ttl = pol.ttl if ttl is None else min(ttl, pol.ttl)
        kp = ctx.key.cache if ctx.key is not None else None
        if kp is not None:
            if not kp.enabled:
                return BYPASS
            on = True
            if kp.ttl is not None:
                ttl = kp.ttl if ttl is None else min(ttl, kp.ttl)
        if not on:
            return None
        return self.default_ttl if ttl is None else ttl

    @staticmethod
    def _bypass(ctx: RequestContext) -> None:
        ctx.cache_status = "bypass"
        ctx.headers["x-gateway-cache"] = "bypass"
        return None

    async def _store(self, ctx: RequestContext, plan: Plan, c: Completion) -> None:
        if not plan.store or not _cacheable(ctx.kind, c):
            return
        now = time.time()
        stored = Completion(body=c.body, usage=c.usage, model=c.model, finish_reason=c.finish_reason)
        await self.backend.set(plan.key, Entry(stored, ctx.provider, ctx.upstream_model, now, now + plan.ttl,
                                               plan.aliases))

    async def _store_stream(self, flight: StreamFlight, plan: Plan) -> None:
        blocks = flight.frames if flight.first is None else [flight.first, *flight.frames]
        c = Accumulator().feed_all(sse.payloads(blocks)).completion(flight.usage, flight.model)
        if c is None:
            return
        owner = flight.owner
        now = time.time()
        c.data = None
        await self.backend.set(plan.key, Entry(c, owner.provider if owner else "",
                                               owner.upstream_model if owner else "", now, now + plan.ttl,
                                               plan.aliases))



def mark_coalesced(ctx: RequestContext, rec: m.Recorder) -> None:
    """This request shares another identical request's upstream call (header + metric, once)."""
    if ctx.notes.get("coalesced"):
        return
    ctx.notes["coalesced"] = True
    ctx.headers["x-gateway-coalesced"] = "true"
    if rec.enabled:
        m.COALESCED.labels(ctx.alias).inc()


def settle_shared(ctx: RequestContext, prices: Prices, rec: m.Recorder, usage: Usage, provider: str,
                  model: str) -> None:
    """A request answered by another's upstream call: no charge (ctx.provider stays empty), and what
    the call would have cost is recorded as saved."""
    mark_coalesced(ctx, rec)
    count_saving(ctx, prices, rec, usage, provider, model)


def count_saving(ctx: RequestContext, prices: Prices, rec: m.Recorder, usage: Usage, provider: str,
                 model: str) -> None:
    """An answer that caused no upstream spend: what `provider` charged for it is this request's saving."""
    ctx.saved_usd = prices.cost(provider, model, usage) if provider else 0.0
    if ctx.saved_usd and rec.enabled:
        key = ctx.key
        m.CACHE_SAVED_USD.labels(ctx.alias, rec.key(key.name if key else ""),
                                 (key.team if key else None) or "").inc(ctx.saved_usd)


def _cacheable(kind: str, c: Completion) -> bool:
    """Only complete, normal answers: chat with every choice finished by stop/length/tool_calls."""
    try:
        data = c.data if c.data is not None else orjson.loads(c.body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict):
        return False
    if kind == "embeddings":
        return isinstance(data.get("data"), list)
    choices = data.get("choices")
    return (isinstance(choices, list) and bool(choices)
            and all(isinstance(ch, dict) and ch.get("finish_reason") in CACHEABLE_FINISH for ch in choices))
