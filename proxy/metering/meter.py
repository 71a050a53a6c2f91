"""Stage 7: metering — after every request: cost, metrics, the request's log line and its ledger row.

Other stages register `on_finish` hooks (quota charging, budget spend) so metering stays the single
place where a finished request is accounted for. `Meter.cost` is the one place a call is priced, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from proxy.core.context import RequestContext
from proxy.core.usage import Usage
from proxy.observability import metrics as m
from proxy.observability.logs import info_emitter

FinishHook = Callable[[RequestContext], Any]


class Prices(Protocol):
    """USD of `usage` on `provider`'s `model` (PriceTable.cost: what the cache prices savings with too)."""

    def cost(self, provider: str, model: str, usage: Usage) -> float: ...


class Meter:
    def __init__(self, recorder: m.Recorder, log_requests: bool = True, prices: Prices | None = None) -> None:
        self.rec = recorder
        self.log_requests = log_requests
        self._emit: Callable[[dict[str, Any]], None] | None = None  # logs.info_emitter, taken on first use
        self.prices = prices
        # called for a finished call that reached an upstream and cost $0 (PriceTable.count_unpriced)
        self.unpriced: Callable[[RequestContext], None] | None = None
        self.hooks: list[FinishHook] = []
        self._cache: dict[tuple[str, ...], tuple[Any, ...]] = {}
        self._child = m.Children()  # the other series it touches

    def log_to(self, logger: Any) -> None:
        """Send the request lines to `logger.info("request", **fields)` instead (tests keep them)."""
        self._emit = lambda fields: logger.info("request", **fields)

    def on_finish(self, hook: FinishHook) -> None:
        self.hooks.append(hook)

    def cost(self, ctx: RequestContext) -> None:
        """Price the call, once: as soon as its usage is known (a JSON answer: before its headers), else
        when it finishes (a stream). Only a call that reached an upstream costs anything: a cache hit or a
        request answered by another's call has no `ctx.provider` (the cache stage prices its saving)."""
        if ctx.priced or ctx.usage is None or not ctx.provider or self.prices is None:
            return
        ctx.priced = True
        ctx.cost_usd = self.prices.cost(ctx.provider, ctx.upstream_model, ctx.usage)
        if ctx.cost_usd == 0.0 and self.unpriced is not None:
            self.unpriced(ctx)

    def finish(self, ctx: RequestContext) -> None:
        elapsed = ctx.elapsed
        if not ctx.priced:
            self.cost(ctx)
        if self.rec.enabled:
            self._record_metrics(ctx, elapsed)
        for hook in self.hooks:
            hook(ctx)
        if self.log_requests:
            self._log(ctx, elapsed)

    def _children(self, alias: str, provider: str, model: str, key: str, team: str, sc: str) -> tuple[Any, ...]:
        """prometheus-client's `.labels()` validates and locks on every call; cache the children. Counters
        are kept as their value cell's `inc` (what `Counter.inc` ends in, minus its per-call checks of an
        amount that is never negative here)."""
        k = (alias, provider, model, key, team, sc)
        c = self._cache.get(k)
        if c is None:
            c = (m.REQUESTS.labels(*k)._value.inc, m.REQUEST_DURATION.labels(alias, provider, sc),
                 m.TOKENS.labels(alias, provider, model, key, team, "prompt")._value.inc,
                 m.TOKENS.labels(alias, provider, model, key, team, "completion")._value.inc,
                 m.TOKENS.labels(alias, provider, model, key, team, "cached")._value.inc,
                 m.COST.labels(alias, provider, model, key, team)._value.inc)
            if len(self._cache) < 100_000:  # bounded: label sets beyond this just aren't cached
                self._cache[k] = c
        return c

    def _record_metrics(self, ctx: RequestContext, elapsed: float) -> None:
        key = ctx.key
        requests, duration, prompt, completion, cached, cost = self._children(
            ctx.served_alias or ctx.alias, ctx.provider, ctx.upstream_model,
            self.rec.key(key.name if key else ""), (key.team if key else None) or "", m.status_class(ctx.status))
        requests(1)
        duration.observe(elapsed)
        if ctx.ttft is not None and ctx.stream:
            self._child(m.TTFT, ctx.served_alias or ctx.alias, ctx.provider).observe(ctx.ttft)
        u = ctx.usage
        if u is not None and ctx.cache_status != "hit":
            prompt(u.prompt_tokens)
            completion(u.completion_tokens)
            if u.cached_tokens:
                cached(u.cached_tokens)
        if ctx.cost_usd:
            cost(ctx.cost_usd)
        for a in ctx.attempts:
            self._child(m.UPSTREAM_ATTEMPT_DURATION, a.provider, a.model, a.error or "ok").observe(a.duration)
            if a.error:
                self._child(m.UPSTREAM_ERRORS, a.provider, a.model, a.error).inc()

    def _log(self, ctx: RequestContext, elapsed: float) -> None:
        u = ctx.usage
        fields: dict[str, Any] = {
            "request_id": ctx.request_id,
            "kind": ctx.kind,
            "client_ip": ctx.client_ip,
            "key": ctx.key.name if ctx.key else None,
            "alias": ctx.alias,
            "provider": ctx.provider or None,
            "upstream_model": ctx.upstream_model or None,
            "status": ctx.status,
            "latency_ms": round(elapsed * 1000, 2),
            "stream": ctx.stream,
        }
        if u is not None:
            fields["prompt_tokens"] = u.prompt_tokens
            fields["completion_tokens"] = u.completion_tokens
        if ctx.ttft is not None:
            fields["ttft_ms"] = round(ctx.ttft * 1000, 2)
        if ctx.cost_usd:
            fields["cost_usd"] = ctx.cost_usd
        if ctx.error_type:
            fields["error_type"] = ctx.error_type
        if ctx.cache_status:
            fields["cache"] = ctx.cache_status
        if ctx.trace_id:
            fields["trace_id"] = ctx.trace_id
        if len(ctx.attempts) > 1:
            fields["attempts"] = [f"{a.provider}/{a.model}:{a.error or a.status}" for a in ctx.attempts]
        if ctx.fallback:
            fields["fallback"] = ctx.fallback
        if ctx.route_rule is not None:
            fields["route_rule"] = ctx.route_rule
        if ctx.agent is not None:
            fields["agent"] = f"{ctx.agent}@{ctx.agent_version}"
        if ctx.chain_id is not None:
            fields["chain_id"] = ctx.chain_id
        if ctx.client_disconnected:
            fields["client_disconnected"] = True
        emit = self._emit
        if emit is None:  # on first use: logging is configured by then
            emit = self._emit = info_emitter("gateway.request", "request")
        emit(fields)
