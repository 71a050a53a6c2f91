"""Every PromQL expression in the dashboard and the alert rules parses in a real Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.observability.promtest import (
    ALERTS,
    PromHandle,
    PromQLError,
    alert_base_exprs,
    alert_exprs,
    base_exprs,
    dashboard_exprs,
    referenced_vars,
    split_set_operands,
    start_prometheus,
    substitute_vars,
    variable_queries,
)


# ---------------------------------------------------------------- helpers (no Prometheus needed)
def test_substitute_vars_covers_grafana_syntax() -> None:
    expr = ('sum(rate(m{a=~"$provider", b=~"${alias}", c=~"${key:regex}", d=~"[[team]]"}[$__rate_interval]))'
            " + increase(m[$__interval]) + increase(m[${__range}])")
    assert substitute_vars(expr) == (
        'sum(rate(m{a=~".*", b=~".*", c=~".*", d=~".*"}[1m])) + increase(m[1m]) + increase(m[1m])')
    assert referenced_vars(expr) == {"provider", "alias", "key", "team"}
    with pytest.raises(ValueError, match="__range_s"):
        substitute_vars("m * $__range_s")


@pytest.mark.parametrize(("expr", "bases"), [
    ("a > 0.05", ["a"]),
    ("sum by (p) (rate(x[5m])) / sum by (p) (rate(y[5m])) >= bool 1",
     ["sum by (p) (rate(x[5m])) / sum by (p) (rate(y[5m]))"]),
    ('x{a!="b>c", d=~"<e"} == 1', ['x{a!="b>c", d=~"<e"}']),
    ("a / (b > 0) >= 0.8", ["a / (b > 0)"]),
    ("a > 1 and on (x) group_left (y) b < 2 unless c", ["a", "b", "c"]),
    ("histogram_quantile(0.95, sum by (le) (rate(h[5m]))) > 30 # comment > 1", [
        "histogram_quantile(0.95, sum by (le) (rate(h[5m])))"]),
    ("up{job='or and'} == 0", ["up{job='or and'}"]),
    ("vector(1)", ["vector(1)"]),
])
def test_base_exprs(expr: str, bases: list[str]) -> None:
    assert base_exprs(expr) == bases


def test_split_ignores_names_that_contain_set_operators() -> None:
    expr = "orders_total + andromeda - unless_x"
    assert split_set_operands(expr) == [expr]


def test_expression_lists_are_complete() -> None:
    names = [n for n, _ in alert_exprs()]
    for wanted in ("GatewayHighErrorRate", "GatewayHighLatencyP95", "GatewayBudgetNearLimit",
                   "GatewayBudgetExceeded", "GatewayCircuitBreakerOpen", "GatewayLedgerDroppingRows"):
        assert wanted in names
    assert len(alert_base_exprs()) >= len(names)
    assert len(dashboard_exprs()) >= 40
    assert all("$" not in expr for _, expr in dashboard_exprs())


# ---------------------------------------------------------------- a real Prometheus
@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromHandle]:
    """Prometheus with no gateway target (it scrapes itself); enough to parse and evaluate queries."""
    handle = start_prometheus([], tmp_path_factory.mktemp("promql"))
    try:
        handle.wait_for_scrape(min_scrapes=1)
        yield handle
    finally:
        handle.stop()


def test_prometheus_rejects_a_bad_expression(prom: PromHandle) -> None:
    """The harness notices a broken query (so the tests below prove something)."""
    with pytest.raises(PromQLError, match="parse error"):
        prom.series("sum by (provider (rate(gateway_requests_total[1m]))")
    assert prom.series("vector(1)")


@pytest.mark.parametrize(("title", "expr"), dashboard_exprs(), ids=[t for t, _ in dashboard_exprs()])
def test_dashboard_expr_is_valid_promql(prom: PromHandle, title: str, expr: str) -> None:
    prom.series(expr)


_ALERT_CASES = [(n, e) for n, e in alert_exprs()] + [(f"{n}-base", e) for n, e in alert_base_exprs()]


@pytest.mark.parametrize(("name", "expr"), _ALERT_CASES, ids=[n for n, _ in _ALERT_CASES])
def test_alert_expr_is_valid_promql(prom: PromHandle, name: str, expr: str) -> None:
    prom.series(expr)


def test_variable_queries_are_valid(prom: PromHandle) -> None:
    for name, selector, label in variable_queries():
        prom.label_values(label, selector)  # raises PromQLError on a bad selector
        assert name == label


def test_prometheus_loads_the_alert_rules(tmp_path: Path) -> None:
    with start_prometheus([], tmp_path, rule_files=[ALERTS]) as handle:
        groups = handle.wait_for_rules()
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(rules) == {n for n, _ in alert_exprs()}
        for name, rule in rules.items():
            assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
