"""Conditional routing rules (`routing_rules:` in gateway.yaml), evaluated before routing.

Rules are compiled once into small predicate lists; first match wins. A rule without an alias
condition (`alias:` or the implicit one of `p95_latency_ms_gt`) applies to chat requests only, so a
blanket "long prompts -> long" rule cannot send embeddings to a chat model.

    - {when: {prompt_tokens_gt: 8000}, use: long}
    - {when: {team: research}, use: smart}
    - {when: {header: {x-priority: low}}, use: cheap}          # value "*" = header present
    - {when: {metadata: {tier: free}}, use: cheap}             # the request body's `metadata`
    - {when: {p95_latency_ms_gt: {alias: smart, value: 20000}}, use: cheap}   # requests for smart
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.config import RoutingRule, RuleWhen
from proxy.core.tokens import prompt_tokens
from proxy.observability import metrics as m

if TYPE_CHECKING:
    from proxy.core.context import RequestContext

Check = Callable[["RequestContext"], bool]
P95Lookup = Callable[[str], "float | None"]  # alias -> recent p95 in seconds


# ctx.notes key set when a latency rule re-routed the request: the alias it was meant for. The cache
# stage may serve a fresh entry of that alias instead of calling the other route.
REROUTED_FROM = "rerouted_from"


class CompiledRule:
    __slots__ = ("checks", "index", "latency", "scoped", "use")

    def __init__(self, index: int, use: str, checks: list[Check], scoped: bool, latency: bool = False) -> None:
        self.index, self.use, self.checks, self.scoped = index, use, tuple(checks), scoped
        self.latency = latency

    def matches(self, ctx: RequestContext) -> bool:
        if not self.scoped and ctx.kind != "chat":
            return False
        return all(check(ctx) for check in self.checks)


def compile_rule(index: int, rule: RoutingRule, p95: P95Lookup) -> CompiledRule:
    w: RuleWhen = rule.when
    checks: list[Check] = []  # cheapest first
    p95_cond = w.p95_latency_ms_gt
    alias = w.alias or (p95_cond["alias"] if p95_cond else None)
    if alias is not None:
        checks.append(lambda ctx: ctx.alias == alias)
    if w.key is not None:
        key = w.key
        checks.append(lambda ctx: ctx.key is not None and ctx.key.name == key)
    if w.team is not None:
        team = w.team
        checks.append(lambda ctx: ctx.key is not None and ctx.key.team == team)
    if w.header:
        wanted = [(name.lower(), value) for name, value in w.header.items()]

        def header(ctx: RequestContext) -> bool:
            h = ctx.request_headers
            if h is None:
                return False
            for name, value in wanted:
                got = h.get(name)
                if got is None or (value != "*" and got != value):
                    return False
            return True

        checks.append(header)
    if w.metadata:
        meta = dict(w.metadata)

        def metadata(ctx: RequestContext) -> bool:
            md = ctx.body.get("metadata")
            return isinstance(md, dict) and all(md.get(k) == v for k, v in meta.items())

        checks.append(metadata)
    if p95_cond is not None:
        target, limit = str(p95_cond["alias"]), float(p95_cond["value"]) / 1000.0

        def slow(ctx: RequestContext) -> bool:
            p = p95(target)
            return p is not None and p > limit

        checks.append(slow)
    if w.prompt_tokens_gt is not None:
        over = w.prompt_tokens_gt
        checks.append(lambda ctx: prompt_tokens(ctx) > over)
    return CompiledRule(index, rule.use, checks, scoped=alias is not None, latency=p95_cond is not None)


class RuleSet:
    def __init__(self, rules: list[RoutingRule], p95: P95Lookup, metrics: bool = True) -> None:
        self.rules = tuple(compile_rule(i, r, p95) for i, r in enumerate(rules))
        self.metrics = metrics

    def apply(self, ctx: RequestContext) -> CompiledRule | None:
        """First matching rule: re-targets ctx.served_alias and records the rule on ctx (the request's
        log line and the x-gateway-route-rule header show it)."""
        for rule in self.rules:
            if rule.matches(ctx):
                ctx.route_rule = rule.index
                if rule.latency:
                    ctx.notes[REROUTED_FROM] = ctx.served_alias
                ctx.served_alias = rule.use
                if self.metrics:
                    m.ROUTE_RULES.labels(str(rule.index), rule.use).inc()
                return rule
        return None
