"""Where agents come from, and the pipeline's hook for `model: "agent/..."` (`expand`).

gateway.yaml's agents are version 1 and read-only. The admin API's live in the ledger database; a replica
keeps what it read for `REFRESH` seconds (a pinned `@version` for good: versions never change), so a change
made on another replica is seen within that time, and at once on the replica that made it (`forget`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from proxy.agents.agent import PREFIX, Agent, parse_model
from proxy.config import GatewayConfig
from proxy.config.agents import AgentFields, OptimizePolicy
from proxy.core.context import RequestContext
from proxy.core.errors import NOT_FOUND, PERMISSION, UNAVAILABLE, GatewayError
from proxy.ledger import LedgerStore
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

REFRESH = 2.0  # seconds a replica trusts what it read of an agent's live version
_MAX_CACHED = 10_000
log = get_logger("gateway.agents")


def not_found(model: str) -> GatewayError:
    return GatewayError(404, f"The agent {model!r} does not exist or you do not have access to it.", NOT_FOUND,
                        code="agent_not_found", param="model")


class AgentRegistry:
    def __init__(self, cfg: GatewayConfig, store: LedgerStore, ready: Callable[[], bool]) -> None:
        self.metrics = cfg.metrics.enabled
        self.config_agents = {name: Agent.build(name, 1, fields, "config") for name, fields in cfg.agents.items()}
        self.store = store
        self.ready = ready
        self._cache: dict[tuple[str, int | None], tuple[float, Agent | None]] = {}
        # an agent's own `optimize:` policy (proxy.optimize.Optimizer.apply, wired in app.py)
        self.optimize: Callable[[RequestContext, OptimizePolicy], Awaitable[None]] | None = None

    def forget(self, name: str) -> None:
        for k in [k for k in self._cache if k[0] == name]:
            del self._cache[k]

    async def get(self, name: str, version: int | None = None) -> Agent | None:
        agent = self.config_agents.get(name)
        if agent is not None:
            return agent if version in (None, 1) else None
        now = time.monotonic()
        hit = self._cache.get((name, version))
        if hit is not None and hit[0] > now:
            return hit[1]
        if not self.ready():
            raise GatewayError(503, "The gateway database is unavailable; agents defined through the admin API "
                               "cannot be read.", UNAVAILABLE, code="database_unavailable")
        try:
            row = await self.store.get_agent(name, version)
        except Exception as err:
            m.BACKEND_ERRORS.labels("db", "agent_lookup").inc()
            log.error("agent_lookup_failed", agent=name, error=f"{type(err).__name__}: {err}")
            raise GatewayError(503, "The gateway database is unavailable.", UNAVAILABLE,
                               code="database_unavailable") from None
        found = from_row(row) if row is not None else None
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        # a pinned version never changes; the live one (and "no such agent") is read again after REFRESH
        ttl = float("inf") if version is not None and found is not None else REFRESH
        self._cache[(name, version)] = (now + ttl, found)
        return found

    async def live(self) -> list[Agent]:
        """Every agent's live version (gateway.yaml's, then the admin API's), for `/v1/models`. The database's
        are left out, with a log line, while it cannot be read: the list is a convenience, not a lookup."""
        found = dict(self.config_agents)
        if self.ready():
            try:
                rows = await self.store.list_agents()
            except Exception as err:
                m.BACKEND_ERRORS.labels("db", "agent_lookup").inc()
                log.warning("agent_list_failed", error=f"{type(err).__name__}: {err}")
                rows = []
            for row in rows:
                found.setdefault(row["name"], from_row(row))
        return list(found.values())

    async def resolve(self, model: str) -> Agent:
        name, version = parse_model(model)
        agent = await self.get(name, version)
        if agent is None:
            raise not_found(model)
        return agent

    async def expand(self, ctx: RequestContext) -> None:
        """The pipeline's hook for `model: "agent/<name>[@v]"` (chat calls): the key must be allowed
        `agent/<name>` here, and the agent's alias by the pipeline's own check right after, so an agent never
        opens an alias to a key that may not use it."""
        if ctx.kind != "chat":
            return  # embeddings: no agents; the router answers 404 for the unknown alias
        assert ctx.key is not None
        agent = await self.resolve(ctx.alias)
        if not ctx.key.may_use(PREFIX + agent.name):
            raise GatewayError(403, f"This API key may not use agent {agent.name!r}.", PERMISSION,
                               code="model_not_allowed", param="model")
        agent.apply(ctx)
        if agent.fields.optimize is not None and self.optimize is not None:
            await self.optimize(ctx, agent.fields.optimize)

    def on_finish(self, ctx: RequestContext) -> None:
        """Metering hook: per agent and version series (only for calls through an agent)."""
        if ctx.agent is not None and self.metrics:
            version = str(ctx.agent_version)
            m.AGENT_REQUESTS.labels(ctx.agent, version, m.status_class(ctx.status)).inc()
            if ctx.cost_usd:
                m.AGENT_COST.labels(ctx.agent, version).inc(ctx.cost_usd)


def from_row(row: dict[str, Any]) -> Agent:
    spec = {k: row[k] for k in AgentFields.model_fields if k in row}
    return Agent.build(row["name"], row["version"], AgentFields.model_validate(spec))
