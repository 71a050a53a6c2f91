"""The Grafana dashboard and its provisioning are well-formed and query only gateway metrics."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from proxy.observability import metrics as gateway_metrics
from tests.observability.promtest import (
    DASHBOARD,
    REPO,
    alert_exprs,
    dashboard_exprs,
    iter_panels,
    load_dashboard,
    referenced_vars,
)

DS_REF = {"type": "prometheus", "uid": "${datasource}"}
FILTER_VARS = ("provider", "alias", "key", "team")
PROVISIONED_DS = REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVISIONED_DASHBOARDS = REPO / "grafana" / "provisioning" / "dashboards" / "gateway.yml"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(iter_panels(dashboard["panels"]))


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def test_dashboard_top_level(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "llm-gateway"
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert isinstance(dashboard["panels"], list) and len(dashboard["panels"]) > 20
    assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns ids


def test_panel_ids_are_unique_ints(dashboard: dict[str, Any]) -> None:
    ids = [p.get("id") for p in _panels(dashboard)]
    assert all(isinstance(i, int) and i > 0 for i in ids), ids
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_every_panel_has_a_grid_position_that_fits_and_none_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for p in _panels(dashboard):
        pos = p.get("gridPos")
        assert pos is not None, f"panel {p.get('title')!r} has no gridPos"
        assert all(isinstance(pos.get(k), int) for k in ("h", "w", "x", "y")), (p["title"], pos)
        assert pos["w"] >= 1 and pos["h"] >= 1 and pos["x"] >= 0 and pos["y"] >= 0
        assert pos["x"] + pos["w"] <= 24, f"panel {p['title']!r} is wider than the grid"
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"panel {p['title']!r} overlaps another panel"
        taken |= cells


def test_every_panel_and_target_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for p in _panels(dashboard):
        assert p.get("title"), f"panel {p['id']} has no title"
        if p["type"] == "row":
            continue
        assert p.get("datasource") == DS_REF, f"panel {p['title']!r}: datasource {p.get('datasource')}"
        targets = p.get("targets") or []
        assert targets, f"panel {p['title']!r} has no targets"
        ref_ids = [t.get("refId") for t in targets]
        assert len(ref_ids) == len(set(ref_ids)) and all(ref_ids), f"panel {p['title']!r}: refIds {ref_ids}"
        for t in targets:
            assert t.get("datasource") == DS_REF, f"panel {p['title']!r} target {t.get('refId')}"
            assert isinstance(t.get("expr"), str) and t["expr"].strip(), f"panel {p['title']!r}: no expr"


def test_templating_variables(dashboard: dict[str, Any]) -> None:
    variables = _variables(dashboard)
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    provisioned = yaml.safe_load(PROVISIONED_DS.read_text())["datasources"][0]
    assert ds["current"]["value"] == provisioned["uid"], "default datasource is the provisioned one"
    for name in FILTER_VARS:
        var = variables[name]
        assert var["type"] == "query", name
        assert var["datasource"] == DS_REF, name
        assert var["includeAll"] is True and var["allValue"] == ".*", name
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        assert query.startswith("label_values(") and query.rstrip(")").endswith(name), query
        assert var["definition"] == query


def test_exprs_only_reference_defined_variables(dashboard: dict[str, Any]) -> None:
    defined = set(_variables(dashboard))
    for title, expr in dashboard_exprs(raw=True):
        unknown = referenced_vars(expr) - defined
        assert not unknown, f"{title}: unknown variables {unknown}"


def test_filters_use_regex_matchers(dashboard: dict[str, Any]) -> None:
    """`label="$var"` would match nothing when the variable is All (.*) or multi-valued."""
    for title, expr in dashboard_exprs(raw=True):
        assert not re.search(r'(?<![=!])=\s*"\$', expr), f"{title}: use =~ with template variables"
        assert not re.search(r'!=\s*"\$', expr), f"{title}: use !~ with template variables"


def _exposed_metrics() -> dict[str, set[str]]:
    """Exposition name -> label names, for every metric object in proxy.metrics."""
    out: dict[str, set[str]] = {}
    for obj in vars(gateway_metrics).values():
        typ = getattr(obj, "_type", None)
        name = getattr(obj, "_name", None)
        if typ is None or not isinstance(name, str) or not name.startswith("gateway_"):
            continue
        labels = set(obj._labelnames)
        if typ == "counter":
            out[f"{name}_total"] = labels
        elif typ == "histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_sum"] = labels
            out[f"{name}_count"] = labels
        else:
            out[name] = labels
    return out


_SELECTOR = re.compile(r"\b(gateway_[a-z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def _check_expr(where: str, expr: str, exposed: dict[str, set[str]]) -> None:
    used: set[str] = set()
    for metric, matchers in _SELECTOR.findall(expr):
        assert metric in exposed, f"{where}: {metric} is not exported by proxy/metrics.py"
        used |= exposed[metric]
        for label in _MATCHER_LABEL.findall(matchers or ""):
            assert label in exposed[metric], f"{where}: {metric} has no label {label!r}"
    for group in _GROUPING.findall(expr):
        for label in (s.strip() for s in group.split(",")):
            if label:
                assert label in used | {"job", "instance"}, f"{where}: grouping by unknown label {label!r}"


def test_dashboard_uses_only_metrics_and_labels_from_proxy_metrics() -> None:
    exposed = _exposed_metrics()
    assert "gateway_requests_total" in exposed and "gateway_request_duration_seconds_bucket" in exposed
    exprs = dashboard_exprs(raw=True)
    for title, expr in exprs:
        _check_expr(title, expr, exposed)
    used = {m for _, e in exprs for m, _ in _SELECTOR.findall(e)}
    # every family is on the dashboard (histogram families via _bucket)
    families = {n for n in exposed if not n.endswith(("_sum", "_count"))}
    assert families <= used, f"metrics without a panel: {sorted(families - used)}"


def test_alerts_use_only_metrics_and_labels_from_proxy_metrics() -> None:
    exposed = _exposed_metrics()
    for name, expr in alert_exprs():
        _check_expr(name, expr, exposed)


def test_provisioning_files() -> None:
    ds = yaml.safe_load(PROVISIONED_DS.read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["uid"] and source["url"] == "http://prometheus:9090"
    prov = yaml.safe_load(PROVISIONED_DASHBOARDS.read_text())
    assert prov["apiVersion"] == 1
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARD.parent.name == "dashboards" and DASHBOARD.exists()
