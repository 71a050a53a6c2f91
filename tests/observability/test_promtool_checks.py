"""promtool accepts config/alerts.yml and config/prometheus.yml, and the alert unit tests pass."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.observability.promtest import ALERTS, PROMETHEUS_CONFIG, REPO, promtool

HERE = Path(__file__).resolve().parent


def _ok(args: tuple[str, ...], cwd: Path) -> str:
    proc = promtool(*args, cwd=cwd)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed (exit {proc.returncode}):\n{out}"
    return out


def test_alert_rules_pass_promtool_check() -> None:
    out = _ok(("check", "rules", str(ALERTS)), REPO)
    assert "SUCCESS" in out


def test_prometheus_config_passes_promtool_check() -> None:
    # rule_files are relative to the config file's directory, as in the compose mount.
    out = _ok(("check", "config", PROMETHEUS_CONFIG.name), PROMETHEUS_CONFIG.parent)
    assert "SUCCESS" in out
    assert "1 rule files found" in out


def test_prometheus_config_checks_from_a_copy(tmp_path: Path) -> None:
    """The config stays valid wherever it is mounted, as long as alerts.yml sits next to it."""
    shutil.copy(PROMETHEUS_CONFIG, tmp_path / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    _ok(("check", "config", "prometheus.yml"), tmp_path)


def test_prometheus_config_wires_gateway_rules_and_alertmanager() -> None:
    cfg = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert cfg["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    assert jobs["gateway"]["static_configs"][0]["targets"] == ["gateway:8080"]
    assert jobs["gateway"].get("metrics_path", "/metrics") == "/metrics"
    am = cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]


def test_alert_rules_fire_above_and_only_above_their_thresholds() -> None:
    """promtool unit tests (tests/observability/alerts_test.yml) with synthetic series."""
    out = _ok(("test", "rules", "alerts_test.yml"), HERE)
    assert "SUCCESS" in out
