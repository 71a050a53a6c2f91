"""Stage 4: routing — which alias serves the request.

Per request, `resolve` checks the alias exists and applies the routing rules (compiled once at
startup); the resilience stage then walks the served alias's plan (resilience/plans.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config import GatewayConfig, ModelAlias
from proxy.core.errors import model_not_found
from proxy.routing.rules import P95Lookup, RuleSet

if TYPE_CHECKING:
    from proxy.core.context import RequestContext


class Router:
    def __init__(self, cfg: GatewayConfig, alias_p95: P95Lookup | None = None) -> None:
        """`alias_p95` (alias -> recent p95 seconds, from the resilience plans) feeds latency rules."""
        self.models = cfg.models
        self.rules = (RuleSet(cfg.routing_rules, alias_p95 or (lambda _alias: None), cfg.metrics.enabled)
                      if cfg.routing_rules else None)

    def resolve(self, ctx: RequestContext) -> ModelAlias:
        """The alias that will serve the request: the one asked for (404 when unknown), unless a
        routing rule sends it elsewhere."""
        if ctx.alias not in self.models:
            raise model_not_found(ctx.alias)
        ctx.served_alias = ctx.alias
        if self.rules is not None:
            self.rules.apply(ctx)
        return self.models[ctx.served_alias]
