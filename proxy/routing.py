"""Stage 4: routing — which alias serves the request and in which order its deployments are tried."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Deployment, GatewayConfig, ModelAlias
from .errors import NOT_FOUND, UNAVAILABLE, GatewayError

if TYPE_CHECKING:
    from .context import RequestContext


class Router:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.models = cfg.models
        self.enabled = {name for name, p in cfg.providers.items() if p.enabled}

    def resolve(self, ctx: RequestContext) -> ModelAlias:
        """The alias the client asked for (404 when unknown, 503 when none of its providers is enabled)."""
        alias = self.models.get(ctx.alias)
        if alias is None:
            raise GatewayError(404, f"The model {ctx.alias!r} does not exist or you do not have access to it.",
                               NOT_FOUND, code="model_not_found", param="model")
        ctx.served_alias = ctx.alias
        return alias

    def candidates(self, alias_name: str) -> list[Deployment]:
        """Deployments of an alias in the order to try them."""
        alias = self.models[alias_name]
        live = [d for d in alias.route if d.provider in self.enabled]
        if not live:
            raise GatewayError(503, f"No enabled provider serves {alias_name!r}.", UNAVAILABLE,
                               code="no_provider_available")
        return live
