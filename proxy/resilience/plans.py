"""Every alias's deployment plan, built once at startup: the resilience stage walks these.

An `AliasPlan` holds the deployments of enabled providers with their merged timeouts, breaker and live
state (in-flight, latency, last error), the retry policy and fallback lists. The composition root
builds `Plans` once, binds the runtime providers into it, and hands it to the executor (which walks
it), to routing (recent p95 per alias, for latency rules) and to the health endpoint (`snapshot`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from proxy.config import Deployment, GatewayConfig, ModelAlias
from proxy.core.errors import UNAVAILABLE, GatewayError
from proxy.providers.base import CallOptions
from proxy.providers.settings import ProviderConfig, Timeouts
from proxy.resilience.balancer import AliasPlan, DeploymentState, Slot
from proxy.resilience.breakers import BreakerBoard

if TYPE_CHECKING:
    from proxy.providers.base import Provider


def merged_timeouts(alias: ModelAlias, provider: ProviderConfig) -> Timeouts:
    """The provider's timeouts with the fields the alias sets explicitly laid over them."""
    if alias.timeouts is None:
        return provider.timeout
    fields = alias.timeouts.model_fields_set
    if not fields:
        return provider.timeout
    return provider.timeout.model_copy(update={f: getattr(alias.timeouts, f) for f in fields})


class Plans:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.models = cfg.models
        self.enabled = {name for name, p in cfg.providers.items() if p.enabled}
        self.breakers = BreakerBoard(cfg.breaker, {n: p.breaker for n, p in cfg.providers.items()},
                                     cfg.metrics.enabled)
        self.deployments: dict[tuple[str, str], DeploymentState] = {}
        self.plans: dict[str, AliasPlan] = {name: self._plan(name, a) for name, a in cfg.models.items()}

    def _plan(self, name: str, alias: ModelAlias) -> AliasPlan:
        slots: list[Slot] = []
        deadline = 0.0
        for d in alias.route:
            if d.provider not in self.enabled:
                continue
            t = merged_timeouts(alias, self.cfg.providers[d.provider])
            opts = CallOptions(t.connect, t.first_token, t.idle, t.total)
            slots.append(Slot(d.provider, d.model, d.weight, d.rpm, d.tpm, self.deployment(d.provider, d.model),
                              opts))
            deadline = max(deadline, t.total)
        if alias.timeouts is not None and "total" in alias.timeouts.model_fields_set:
            deadline = alias.timeouts.total
        return AliasPlan(name, alias, slots, deadline or Timeouts().total)

    def deployment(self, provider: str, model: str) -> DeploymentState:
        st = self.deployments.get((provider, model))
        if st is None:
            st = self.deployments[(provider, model)] = DeploymentState(provider, model,
                                                                      self.breakers.get(provider, model))
        return st

    def refresh_options(self) -> None:
        """Recompute every slot's call options from the (mutated) config, e.g. timeouts changed live."""
        for name, plan in self.plans.items():
            alias = self.models[name]
            for s in plan.slots:
                t = merged_timeouts(alias, self.cfg.providers[s.provider])
                s.opts = CallOptions(t.connect, t.first_token, t.idle, t.total)

    def bind(self, providers: dict[str, Provider]) -> None:
        """Attach the runtime Provider objects to every slot (once, by the composition root)."""
        for plan in self.plans.values():
            for s in plan.slots:
                s.client = providers[s.provider]
                s.self_timed = s.client.self_timed

    def plan(self, alias: str) -> AliasPlan:
        return self.plans[alias]

    def alias_p95(self, alias: str) -> float | None:
        plan = self.plans.get(alias)
        return plan.p95(time.perf_counter()) if plan is not None else None

    def candidates(self, alias_name: str) -> list[Deployment]:
        """Deployments of an alias with an enabled provider, in route order."""
        live = [d for d in self.models[alias_name].route if d.provider in self.enabled]
        if not live:
            raise GatewayError(503, f"No enabled provider serves {alias_name!r}.", UNAVAILABLE,
                               code="no_provider_available")
        return live

    def snapshot(self) -> dict[str, Any]:
        """Live state per deployment (GET /health/providers)."""
        now = time.perf_counter()
        return {f"{p}/{mdl}": st.snapshot(now) for (p, mdl), st in self.deployments.items()}
