"""Every dashboard query and every alert's compared series returns data from a real Prometheus.

Prometheus scrapes a tiny aiohttp app serving `proxy.metrics`' real /metrics handler; before each
scrape the app records a round of "traffic of every kind" through the real metric objects (all
families, realistic label values), so counters move between scrapes and rate()/histogram_quantile()
have something to chew on. A later test can drive a live gateway instead and reuse the same checks
through `promtest` (dashboard_exprs / alert_base_exprs / variable_queries).

Isolation: the label values here carry an `obs-` prefix wherever a label is free-form (aliases,
models, keys, teams, budget and rule names), every labelled child created is removed afterwards,
and gauges are put back to their previous values. Unlabelled counters (cache evictions, ledger rows)
only ever go up, so tests reading them must compare before/after values.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.metrics import MetricWrapperBase

from proxy.observability import metrics as m
from tests.observability.promtest import (
    ALERTS,
    PromHandle,
    alert_base_exprs,
    alert_exprs,
    dashboard_exprs,
    start_prometheus,
    variable_queries,
)

ROUTES = (  # alias, provider, upstream_model
    ("obs-chat", "openai", "obs-gpt-4o-mini"),
    ("obs-claude", "anthropic", "obs-claude-3-5-haiku"),
)
KEYS = (  # key name, team ("" = a key without a team)
    ("obs-key-alice", "obs-team-search"),
    ("obs-key-bob", "obs-team-support"),
    ("obs-key-ci", ""),
)
STATUS_MIX = (("2xx", 18), ("4xx", 1), ("5xx", 1))
LATENCIES = {"2xx": (0.4, 1.2, 2.7, 8.0), "4xx": (0.02,), "5xx": (31.0,)}


class Traffic:
    """Records gateway-like traffic straight into proxy.metrics, and undoes it afterwards."""

    def __init__(self) -> None:
        self._children: set[tuple[MetricWrapperBase, tuple[str, ...]]] = set()
        self._gauge_deltas: list[tuple[Any, float]] = []
        self.rounds = 0

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        self._children.add((metric, labels))
        return metric.labels(*labels)

    def _gauge_inc(self, gauge: Any, amount: float) -> None:
        gauge.inc(amount)
        self._gauge_deltas.append((gauge, amount))

    def setup(self) -> None:
        """State-like series (gauges): in-flight requests, cache size, ledger queue, breakers, budgets."""
        self._gauge_inc(m.IN_FLIGHT.labels("chat"), 3)
        self._gauge_inc(m.IN_FLIGHT.labels("embeddings"), 1)
        self._gauge_inc(m.CACHE_BYTES, 65536)
        self._gauge_inc(m.LEDGER_QUEUE, 17)
        (openai_route, claude_route) = ROUTES
        self._child(m.BREAKER_STATE, openai_route[1], openai_route[2]).set(0)  # closed
        self._child(m.BREAKER_STATE, claude_route[1], claude_route[2]).set(1)  # open
        self._child(m.BUDGET_SPEND, "key", "obs-key-alice").set(85.0)  # 85% of its limit
        self._child(m.BUDGET_LIMIT, "key", "obs-key-alice").set(100.0)
        self._child(m.BUDGET_SPEND, "team", "obs-team-search").set(120.0)  # over budget
        self._child(m.BUDGET_LIMIT, "team", "obs-team-search").set(100.0)
        self._child(m.BACKEND_UP, "redis").set(1)
        self._child(m.BACKEND_UP, "db").set(0)  # down
        self._gauge_inc(m.WEBHOOK_PENDING, 12)

    def step(self) -> None:
        """One round of requests of every kind (called before each scrape)."""
        self.rounds += 1
        for alias, provider, model in ROUTES:
            for key, team in KEYS:
                for status_class, n in STATUS_MIX:
                    self._child(m.REQUESTS, alias, provider, model, key, team, status_class).inc(n)
                for kind, n in (("prompt", 1200), ("completion", 300), ("cached", 200)):
                    self._child(m.TOKENS, alias, provider, model, key, team, kind).inc(n)
                self._child(m.COST, alias, provider, model, key, team).inc(0.0042)
                self._child(m.CACHE_SAVED_USD, alias, key, team).inc(0.0011)
                self._child(m.RATE_LIMITED, "rpm", key, team).inc()
                self._child(m.RATE_LIMITED, "tpm", key, team).inc()
                self._child(m.BUDGET_REJECTED, "key", key, team).inc()
                self._child(m.BUDGET_REJECTED, "team", key, team).inc()
            for status_class, durations in LATENCIES.items():
                for seconds in durations:
                    self._child(m.REQUEST_DURATION, alias, provider, status_class).observe(seconds)
            for seconds in (0.15, 0.3, 0.8):
                self._child(m.TTFT, alias, provider).observe(seconds)
            self._child(m.UPSTREAM_ATTEMPT_DURATION, provider, model, "ok").observe(1.1)
            self._child(m.UPSTREAM_ATTEMPT_DURATION, provider, model, "error").observe(5.0)
            self._child(m.CACHE_HITS, alias).inc(3)
            self._child(m.CACHE_MISSES, alias).inc(7)
            self._child(m.COALESCED, alias).inc()
            self._child(m.RETRIES, alias, provider, "upstream_5xx").inc()
            self._child(m.RETRIES, alias, provider, "rate_limited").inc()
            for error_type in ("timeout", "http_5xx", "connection"):
                self._child(m.UPSTREAM_ERRORS, provider, model, error_type).inc()
            self._child(m.ROUTE_RULES, "obs-long-prompts", alias).inc()
            self._child(m.UNPRICED, provider, f"{model}-unpriced").inc()
        self._child(m.FALLBACKS, "obs-chat", "obs-claude", "upstream_error").inc()
        self._child(m.BACKEND_ERRORS, "redis", "obs-incr").inc()
        self._child(m.BACKEND_ERRORS, "database", "obs-insert").inc()
        m.CACHE_EVICTIONS.inc()
        m.LEDGER_WRITTEN.inc(40)
        m.LEDGER_DROPPED.inc(2)
        self._child(m.WEBHOOK_DELIVERIES, "invocation.completed", "delivered").inc(5)
        self._child(m.WEBHOOK_DELIVERIES, "budget.threshold", "retry").inc()
        for seconds in (0.02, 0.05, 0.3):
            m.WEBHOOK_DELIVERY_SECONDS.observe(seconds)
        m.WEBHOOK_DROPPED.inc()
        self._child(m.AGENT_REQUESTS, "obs-review", "2", "2xx").inc(4)
        self._child(m.AGENT_COST, "obs-review", "2").inc(0.003)
        self._child(m.CHAIN_RUNS, "obs-chain", "ok").inc()
        self._child(m.PROMPT_SAVED_TOKENS, "compact").inc(120)

    def undo(self) -> None:
        for gauge, amount in reversed(self._gauge_deltas):
            gauge.dec(amount)
        self._gauge_deltas.clear()
        for metric, labels in self._children:
            try:
                metric.remove(*labels)
            except KeyError:  # pragma: no cover - already gone
                pass
        self._children.clear()


class MetricsTarget:
    """The aiohttp app Prometheus scrapes, on its own thread and event loop (queries here are blocking)."""

    def __init__(self, traffic: Traffic) -> None:
        self.traffic = traffic
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def app(self) -> web.Application:
        @web.middleware
        async def traffic_before_scrape(request: web.Request,
                                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                        ) -> web.StreamResponse:
            self.traffic.step()
            return await handler(request)

        app = web.Application(middlewares=[traffic_before_scrape])
        app.router.add_get("/metrics", m.metrics_handler)  # the gateway's own exposition handler
        return app

    def start(self) -> str:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            runner = web.AppRunner(self.app(), access_log=None)
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                self.port = int(runner.addresses[0][1])
            except BaseException as err:  # pragma: no cover - surfaced by start()
                self._error = err
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="metrics-target", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._error is not None:
            raise RuntimeError(f"metrics target did not start: {self._error!r}")
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture(scope="module")
def live_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromHandle]:
    traffic = Traffic()
    target = MetricsTarget(traffic)
    traffic.setup()
    try:
        address = target.start()
        with start_prometheus([address], tmp_path_factory.mktemp("live"), rule_files=[ALERTS]) as prom:
            prom.wait_for_scrape(min_scrapes=3)
            yield prom
    finally:
        target.stop()
        traffic.undo()


def _gateway_families() -> set[str]:
    """Exposition names of the `gateway_*` families proxy.metrics defines (histograms: _bucket)."""
    names: set[str] = set()
    for obj in vars(m).values():
        if isinstance(obj, MetricWrapperBase) and obj._name.startswith("gateway_"):
            suffix = {"counter": "_total", "histogram": "_bucket"}.get(obj._type, "")
            names.add(obj._name + suffix)
    return names


def test_every_metric_family_is_scraped(live_prom: PromHandle) -> None:
    got = {s["metric"]["__name__"]
           for s in live_prom.series('count by (__name__) ({__name__=~"gateway_.+", job="gateway"})')}
    missing = _gateway_families() - got
    assert not missing, f"families not scraped: {sorted(missing)}"


@pytest.mark.parametrize(("title", "expr"), dashboard_exprs(), ids=[t for t, _ in dashboard_exprs()])
def test_dashboard_query_returns_data(live_prom: PromHandle, title: str, expr: str) -> None:
    result = live_prom.series(expr)
    assert result, f"{title}: no data for\n  {expr}"


@pytest.mark.parametrize(("name", "expr"), alert_base_exprs(), ids=[n for n, _ in alert_base_exprs()])
def test_alert_base_series_returns_data(live_prom: PromHandle, name: str, expr: str) -> None:
    result = live_prom.series(expr)
    assert result, f"{name}: the compared series has no data:\n  {expr}"


@pytest.mark.parametrize(("name", "expr"), alert_exprs(), ids=[n for n, _ in alert_exprs()])
def test_alert_expr_evaluates(live_prom: PromHandle, name: str, expr: str) -> None:
    live_prom.series(expr)  # valid with data too (no many-to-many matching errors etc.)


@pytest.mark.parametrize(("name", "selector", "label"), variable_queries(),
                         ids=[n for n, _, _ in variable_queries()])
def test_template_variable_has_values(live_prom: PromHandle, name: str, selector: str | None,
                                      label: str) -> None:
    values = live_prom.label_values(label, selector)
    assert any(v.startswith("obs-") or v in ("openai", "anthropic") for v in values), (name, values)


def test_loaded_rules_evaluate_cleanly_and_budget_alerts_trip(live_prom: PromHandle) -> None:
    groups = live_prom.wait_for_rules()
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {n for n, _ in alert_exprs()}
    for name, rule in rules.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
    # obs-team-search is at 120% of its budget and obs-key-alice at 85%: both alerts are pending.
    # (only this test's obs-* series count: the process-wide registry may hold earlier tests' budgets)
    exceeded = {a["labels"]["name"] for a in rules["GatewayBudgetExceeded"]["alerts"]
                if a["labels"]["name"].startswith("obs-")}
    near = {a["labels"]["name"] for a in rules["GatewayBudgetNearLimit"]["alerts"]
            if a["labels"]["name"].startswith("obs-")}
    assert exceeded == {"obs-team-search"}
    assert near == {"obs-team-search", "obs-key-alice"}
    # the anthropic breaker is open: pending until it has been open for 5 minutes
    breakers = {a["labels"]["upstream_model"] for a in rules["GatewayCircuitBreakerOpen"]["alerts"]}
    assert breakers == {"obs-claude-3-5-haiku"}
