"""Run a real Prometheus in tests and check the dashboard's and alert rules' PromQL against it.

Reusable by any test (`from tests.observability.promtest import ...`):

    prom = start_prometheus(["127.0.0.1:8080"], tmp_path)   # scrapes the targets every second
    try:
        prom.wait_for_scrape()                                # >= 3 successful scrapes of each target
        for title, expr in dashboard_exprs():                 # Grafana variables already substituted
            assert prom.series(expr), title                   # raises PromQLError if the query is invalid
    finally:
        prom.stop()

`alert_exprs()` gives each rule's full `expr`; `alert_base_exprs()` the series each rule compares (the
left-hand side of its top-level comparison), which must return data whenever the metric exists.
Nothing here imports the gateway; only the standard library (plus pytest and PyYAML).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "grafana" / "dashboards" / "gateway.json"
ALERTS = REPO / "config" / "alerts.yml"
PROMETHEUS_CONFIG = REPO / "config" / "prometheus.yml"
GATEWAY_JOB = "gateway"

# What the Grafana built-ins become when a query runs outside Grafana. 1m covers >= 2 samples at the
# 1 s scrape interval used here, so rate()/increase() have data after a few scrapes.
GRAFANA_INTERVAL = "1m"
ALL_VALUE = ".*"


# ---------------------------------------------------------------- environment
def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of `name`; skip the test when it is missing, but fail under CI=true (it must be installed)."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (run `bash scripts/install-system-deps.sh` as root)"
    if in_ci():
        pytest.fail(reason + "; CI must have it", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- Grafana / alert expressions
_BUILTIN = re.compile(r"\$(?:__(?:rate_interval|interval|range)\b|\{__(?:rate_interval|interval|range)\})")
_BUILTIN_OTHER = re.compile(r"\$\{?__\w+\}?")
_VAR_FORMS = (
    re.compile(r"\$\{(\w+)(?::[\w-]+)?\}"),  # ${var} ${var:regex}
    re.compile(r"\[\[(\w+)(?::[\w-]+)?\]\]"),  # [[var]] (deprecated syntax)
    re.compile(r"\$(\w+)"),  # $var
)


def substitute_vars(expr: str, all_value: str = ALL_VALUE, interval: str = GRAFANA_INTERVAL) -> str:
    """Turn a Grafana query into plain PromQL: range built-ins -> `interval`, template variables -> All."""
    out = _BUILTIN.sub(interval, expr)
    leftover = _BUILTIN_OTHER.search(out)
    if leftover:
        raise ValueError(f"unsupported Grafana built-in {leftover.group(0)!r} in {expr!r}")
    for pattern in _VAR_FORMS:
        out = pattern.sub(all_value, out)
    return out


def referenced_vars(expr: str) -> set[str]:
    """Template variable names used in a Grafana query (built-ins excluded)."""
    names: set[str] = set()
    for pattern in _VAR_FORMS:
        names.update(n for n in pattern.findall(expr) if not n.startswith("__"))
    return names


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def dashboard_exprs(path: Path = DASHBOARD, *, raw: bool = False) -> list[tuple[str, str]]:
    """(`panel title [refId]`, expr) for every target; variables substituted unless raw=True."""
    out: list[tuple[str, str]] = []
    for panel in iter_panels(load_dashboard(path).get("panels", [])):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if not expr:
                continue
            title = f"{panel.get('title', '?')} [{target.get('refId', '?')}]"
            out.append((title, expr if raw else substitute_vars(expr)))
    return out


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$", re.S)


def variable_queries(path: Path = DASHBOARD, *, raw: bool = False) -> list[tuple[str, str | None, str]]:
    """(variable name, series selector or None, label) of every `label_values(...)` query variable."""
    out: list[tuple[str, str | None, str]] = []
    for var in load_dashboard(path).get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        m = _LABEL_VALUES.match(text)
        if not m:
            raise ValueError(f"variable {var.get('name')!r}: not a label_values() query: {text!r}")
        selector = m.group("selector")
        if selector is not None and not raw:
            selector = substitute_vars(selector)
        out.append((str(var["name"]), selector, m.group("label")))
    return out


def load_alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc.get("groups", []) for rule in group.get("rules", [])]


def alert_exprs(path: Path = ALERTS) -> list[tuple[str, str]]:
    """(alert name, expr) for every alerting rule (recording rules: (record name, expr))."""
    return [(str(r.get("alert") or r.get("record")), str(r["expr"]).strip()) for r in load_alert_rules(path)]


def alert_base_exprs(path: Path = ALERTS) -> list[tuple[str, str]]:
    """(alert name, base expr): the series each alert compares, which must have data with traffic.

    A rule may override the automatic split with `annotations.query` (a plain PromQL expression).
    """
    out: list[tuple[str, str]] = []
    for rule in load_alert_rules(path):
        name = str(rule.get("alert") or rule.get("record"))
        override = (rule.get("annotations") or {}).get("query")
        bases = [str(override)] if override else base_exprs(str(rule["expr"]))
        out.extend((name, base) for base in bases)
    return out


# ---------------------------------------------------------------- a small PromQL splitter
_OPEN = {"(": ")", "[": "]", "{": "}"}
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPS = ("and", "or", "unless")
_MATCHING = re.compile(
    r"^\s*(?:(?:on|ignoring)\s*\([^)]*\)\s*)?(?:(?:group_left|group_right)\s*(?:\([^)]*\))?\s*)?", re.S
)


def _top_level_ops(expr: str) -> Iterator[tuple[int, str]]:
    """(index, operator) of binary comparison and set operators outside (), [], {} and strings."""
    depth = 0
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":  # string literal
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            i = j + 1
            continue
        if c == "#":  # comment to end of line
            nl = expr.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c in _OPEN:
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            two = expr[i : i + 2]
            if two in _COMPARISONS:
                yield i, two
                i += 2
                continue
            if c in "<>":
                yield i, c
            elif c.isalpha() or c == "_":
                j = i
                while j < n and (expr[j].isalnum() or expr[j] in "_:"):
                    j += 1
                word = expr[i:j]
                if word in _SET_OPS:
                    yield i, word
                i = j
                continue
        i += 1


def _strip_matching(operand: str) -> str:
    return _MATCHING.sub("", operand, count=1).strip()


def split_set_operands(expr: str) -> list[str]:
    """Operands of the top-level `and` / `or` / `unless` operators (the whole expr if there are none)."""
    parts: list[str] = []
    start = 0
    for i, op in _top_level_ops(expr):
        if op in _SET_OPS:
            parts.append(expr[start:i])
            start = i + len(op)
    parts.append(expr[start:])
    return [_strip_matching(p) for p in parts]


def comparison_lhs(expr: str) -> str:
    """The left-hand side of the first top-level comparison (the expr itself if there is none)."""
    for i, op in _top_level_ops(expr):
        if op in _COMPARISONS:
            return expr[:i].strip()
    return expr.strip()


def base_exprs(expr: str) -> list[str]:
    """The series an alert compares: per set-operator operand, the left side of its comparison."""
    return [comparison_lhs(operand) for operand in split_set_operands(expr)]


# ---------------------------------------------------------------- a real Prometheus
class PromQLError(AssertionError):
    """Prometheus rejected a query (the message carries its errorType and error)."""


@dataclass
class PromHandle:
    """A Prometheus subprocess started by start_prometheus()."""

    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    gateway_targets: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- HTTP API
    def api(self, path: str, params: dict[str, str] | list[tuple[str, str]] | None = None,
            timeout: float = 10.0) -> dict[str, Any]:
        """GET /api/v1/<path>; the decoded body, also for 4xx/5xx answers carrying a JSON error."""
        url = f"{self.base_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"status": "error", "errorType": f"http {err.code}",
                        "error": raw.decode(errors="replace")}
            return body

    def query(self, expr: str) -> dict[str, Any]:
        """Instant query at now: the whole API answer ({"status": "success" | "error", "data": ...})."""
        return self.api("query", {"query": expr})

    def series(self, expr: str) -> list[dict[str, Any]]:
        """The result list of an instant query; PromQLError if Prometheus rejects the expression."""
        body = self.query(expr)
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}\n  query: {expr}")
        result: list[dict[str, Any]] | Any = body["data"]["result"]
        if body["data"].get("resultType") in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result)

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        params: list[tuple[str, str]] = [("match[]", match)] if match else []
        body = self.api(f"label/{urllib.parse.quote(label)}/values", params)
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}\n  label {label}, match {match}")
        return [str(v) for v in body["data"]]

    def rules(self) -> list[dict[str, Any]]:
        body = self.api("rules")
        groups: list[dict[str, Any]] = body["data"]["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets")["data"]["activeTargets"]
        return active

    # -- lifecycle
    def wait_for_scrape(self, min_scrapes: int = 3, timeout: float = 30.0) -> None:
        """Block until every gateway target (or Prometheus itself) is up with >= min_scrapes samples."""
        job = GATEWAY_JOB if self.gateway_targets else "prometheus"
        want = max(len(self.gateway_targets), 1)
        expr = f'count_over_time(up{{job="{job}"}}[10m]) >= {min_scrapes} and up{{job="{job}"}} == 1'
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                got = self.series(expr)
                if len(got) >= want:
                    return
                last = f"{len(got)}/{want} targets ready; targets: {self._target_health()}"
            except (OSError, PromQLError) as err:
                last = repr(err)
            time.sleep(0.25)
        raise TimeoutError(f"Prometheus did not scrape its targets in {timeout}s ({last})\n{self.log_tail()}")

    def wait_for_rules(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until every loaded rule has been evaluated once; the rule groups."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            groups = self.rules()
            rules = [r for g in groups for r in g["rules"]]
            if rules and all(r.get("health") in ("ok", "err") for r in rules):  # "unknown" until evaluated
                return groups
            time.sleep(0.25)
        raise TimeoutError(f"rules not evaluated within {timeout}s\n{self.log_tail()}")

    def _target_health(self) -> str:
        try:
            return ", ".join(f"{t['scrapeUrl']}={t['health']} {t.get('lastError', '')}".strip()
                             for t in self.targets())
        except (OSError, KeyError, ValueError) as err:
            return repr(err)

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.proc.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no prometheus log)"
        return "prometheus log (tail):\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> PromHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def prometheus_config(port: int, targets: list[str], rule_files: list[Path], scrape_interval: str) -> str:
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
                   "scrape_timeout": scrape_interval},
        "rule_files": [str(p.resolve()) for p in rule_files],
        "scrape_configs": [{"job_name": "prometheus",
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }
    if targets:
        config["scrape_configs"].append({"job_name": GATEWAY_JOB, "metrics_path": "/metrics",
                                         "static_configs": [{"targets": list(targets)}]})
    return yaml.safe_dump(config, sort_keys=False)


def start_prometheus(targets: list[str], tmp_path: Path, *, rule_files: list[Path] | None = None,
                     scrape_interval: str = "1s", ready_timeout: float = 30.0) -> PromHandle:
    """Start `prometheus` on a free 127.0.0.1 port scraping `targets` ("host:port", job "gateway").

    Skips the test when prometheus is not installed (fails under CI=true). The caller stops it
    (`handle.stop()` or `with start_prometheus(...) as prom:`).
    """
    binary = require_binary("prometheus")
    last_error = ""
    for attempt in range(3):  # a free port can be taken between free_port() and prometheus' bind
        workdir = Path(tmp_path) / f"prometheus-{attempt}"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        port = free_port()
        config_path = workdir / "prometheus.yml"
        config_path.write_text(prometheus_config(port, targets, rule_files or [], scrape_interval))
        log_path = workdir / "prometheus.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
        handle = PromHandle(proc, port, workdir, log_path, list(targets))
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{handle.base_url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return handle
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        handle.stop()
        last_error = handle.log_tail()
    raise RuntimeError(f"prometheus did not become ready\n{last_error}")


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool (skip / CI-fail when missing); the completed process, never raising on exit code."""
    binary = require_binary("promtool")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
