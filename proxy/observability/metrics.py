"""Prometheus metrics: every `gateway_*` series in one place (dashboards and alerts depend on these names).

Label conventions: `alias`, `provider`, `upstream_model`, `key` (the key's *name*, blanked when
`metrics.key_label: false`), `team`, `status_class` ("2xx", "4xx", "5xx"). Histograms leave out
`key`/`team` so their cardinality stays bounded. With PROMETHEUS_MULTIPROC_DIR set, several worker
processes aggregate through prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _mp
from prometheus_client import values as _pv


class LoopValue(_pv.MutexValue):
    """prometheus-client's single-process value cell without its lock. Every series of this process is
    updated and read on the event-loop thread (no stage hands metrics to a thread), so the lock taken
    on each of the ~10 increments a request makes guards nothing. Multi-process mode keeps its own cells."""

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value
        self._timestamp = timestamp

    def get(self) -> float:
        return self._value


if _pv.ValueClass is _pv.MutexValue:  # before any metric below creates its cells
    _pv.ValueClass = LoopValue

# No `*_created` series: they double /metrics (a 10k-series render drops by half) and no panel or
# alert reads them.
disable_created_metrics()

# LLM latencies: 10 ms .. 120 s
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)

REQ = ("alias", "provider", "upstream_model", "key", "team", "status_class")

REQUESTS = Counter("gateway_requests", "Requests served, by outcome", REQ)
REQUEST_DURATION = Histogram("gateway_request_duration_seconds", "Whole request duration as the client saw it",
                             ("alias", "provider", "status_class"), buckets=LATENCY_BUCKETS)
TTFT = Histogram("gateway_time_to_first_token_seconds", "Time to the first streamed chunk",
                 ("alias", "provider"), buckets=TTFT_BUCKETS)
UPSTREAM_ATTEMPT_DURATION = Histogram("gateway_upstream_attempt_duration_seconds",
                                      "Duration of one upstream attempt",
                                      ("provider", "upstream_model", "outcome"), buckets=LATENCY_BUCKETS)
TOKENS = Counter("gateway_tokens", "Tokens by type (prompt, completion, cached)",
                 ("alias", "provider", "upstream_model", "key", "team", "type"))
COST = Counter("gateway_cost_usd", "Cost in USD", ("alias", "provider", "upstream_model", "key", "team"))
UNPRICED = Counter("gateway_unpriced_calls", "Calls whose upstream model has no price (counted as $0)",
                   ("provider", "upstream_model"))
IN_FLIGHT = Gauge("gateway_in_flight_requests", "Requests being served", ("kind",),
                  multiprocess_mode="livesum")
CACHE_HITS = Counter("gateway_cache_hits", "Response cache hits", ("alias",))
CACHE_MISSES = Counter("gateway_cache_misses", "Response cache misses", ("alias",))
CACHE_EVICTIONS = Counter("gateway_cache_evictions", "Entries evicted from the in-process cache")
CACHE_BYTES = Gauge("gateway_cache_bytes", "Bytes held by the in-process cache", multiprocess_mode="livesum")
CACHE_SAVED_USD = Counter("gateway_cache_saved_usd", "Cost saved by cache hits", ("alias", "key", "team"))
COALESCED = Counter("gateway_coalesced_requests", "Requests that shared an identical in-flight call",
                    ("alias",))
RATE_LIMITED = Counter("gateway_rate_limited", "Requests rejected by a rate limit", ("reason", "key", "team"))
BUDGET_REJECTED = Counter("gateway_budget_rejected", "Requests rejected by a budget", ("scope", "key", "team"))
BUDGET_SPEND = Gauge("gateway_budget_spend_usd", "Spend in the current budget period", ("scope", "name"),
                     multiprocess_mode="max")
BUDGET_LIMIT = Gauge("gateway_budget_limit_usd", "Budget limit for the period", ("scope", "name"),
                     multiprocess_mode="max")
BREAKER_STATE = Gauge("gateway_circuit_breaker_state", "0 closed, 1 open, 2 half-open",
                      ("provider", "upstream_model"), multiprocess_mode="max")
RETRIES = Counter("gateway_retries", "Upstream retries", ("alias", "provider", "reason"))
FALLBACKS = Counter("gateway_fallbacks", "Fallbacks to another alias", ("from_alias", "to_alias", "reason"))
UPSTREAM_ERRORS = Counter("gateway_upstream_errors", "Upstream failures by type",
                          ("provider", "upstream_model", "type"))
LEDGER_QUEUE = Gauge("gateway_ledger_queue_depth", "Usage rows waiting to be written", multiprocess_mode="livesum")
LEDGER_DROPPED = Counter("gateway_ledger_dropped_rows", "Usage rows dropped because the queue was full")
LEDGER_WRITTEN = Counter("gateway_ledger_written_rows", "Usage rows written to the database")
BACKEND_ERRORS = Counter("gateway_backend_errors", "Redis / database errors", ("backend", "operation"))
BACKEND_UP = Gauge("gateway_backend_up", "1 while the backend (redis, db) is reachable, 0 while it is down",
                   ("backend",), multiprocess_mode="livemin")
WEBHOOK_DELIVERIES = Counter("gateway_webhook_deliveries", "Webhook delivery attempts by event type and outcome "
                             "(delivered, retry, failed)", ("event", "outcome"))
WEBHOOK_DELIVERY_SECONDS = Histogram("gateway_webhook_delivery_seconds", "Duration of one webhook delivery attempt",
                                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
WEBHOOK_PENDING = Gauge("gateway_webhook_pending", "Webhook deliveries waiting in the database (every replica's)",
                        multiprocess_mode="max")
WEBHOOK_DROPPED = Counter("gateway_webhook_dropped_events", "Webhook events dropped: the producer's queue was full")
ROUTE_RULES = Counter("gateway_route_rule_matches", "Routing rules that fired", ("rule", "alias"))
# agents, chains and prompt optimisation: series of their own, so the hot path's label sets stay as they are
AGENT_REQUESTS = Counter("gateway_agent_requests", "Calls through an agent (model agent/<name>), by version and "
                         "outcome", ("agent", "version", "status_class"))
AGENT_COST = Counter("gateway_agent_cost_usd", "Upstream cost of calls through an agent, USD", ("agent", "version"))
CHAIN_RUNS = Counter("gateway_chain_runs", "Chains run (POST /v1/gateway/chains, model chain/<name>), by outcome",
                     ("chain", "outcome"))
PROMPT_SAVED_TOKENS = Counter("gateway_prompt_saved_tokens", "Prompt tokens (estimated) saved by prompt "
                              "optimisation", ("mode",))


ALL = [v for v in list(globals().values()) if isinstance(v, Counter | Gauge | Histogram)]


class Children:
    """`metric.labels(*values)`, cached: prometheus-client validates the values and takes a lock on every
    `.labels()` call, which the request path would otherwise pay for each series it touches. Bounded: label
    sets beyond `limit` are looked up each time instead of kept."""

    __slots__ = ("_cache", "_limit")

    def __init__(self, limit: int = 10_000) -> None:
        self._cache: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._limit = limit

    def __call__(self, metric: Any, *values: str) -> Any:
        key = (metric, values)
        child = self._cache.get(key)
        if child is None:
            child = metric.labels(*values)
            if len(self._cache) < self._limit:
                self._cache[key] = child
        return child


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class Recorder:
    """Hot-path facade; a disabled recorder makes every call a cheap no-op (benchmarks: on vs off)."""

    __slots__ = ("enabled", "key_label")

    def __init__(self, enabled: bool = True, key_label: bool = True) -> None:
        self.enabled = enabled
        self.key_label = key_label

    def key(self, name: str | None) -> str:
        return (name or "") if self.key_label else ""


def render(registry: CollectorRegistry | None = None) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)
    if registry is not None:
        return generate_latest(registry)
    from proxy.observability.exposition import render as fast_render

    return fast_render(ALL)


async def metrics_handler(request: web.Request) -> web.Response:
    body = render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
