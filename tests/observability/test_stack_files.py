"""docker-compose stack, Alertmanager config and the system-deps script, checked by reading them.

Docker is not available in the test environment, so the compose file is parsed and cross-checked
against the repository: every bind-mounted path exists, the configs mounted into each container
reference each other consistently, and the gateway's compose config loads with the real loader.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from proxy.config import load_config
from tests.conftest import service_unavailable
from tests.observability.promtest import ALERTS, DASHBOARD, PROMETHEUS_CONFIG, REPO, in_ci

CONFIG = REPO / "config"
COMPOSE = CONFIG / "docker-compose.yml"
ALERTMANAGER = CONFIG / "alertmanager.yml"
GATEWAY_COMPOSE_CONFIG = CONFIG / "gateway.compose.yaml"
INSTALL_SCRIPT = REPO / "scripts" / "install-system-deps.sh"
SERVICES = ("gateway", "redis", "prometheus", "alertmanager", "grafana")


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host source (bind mounts resolved against config/, named volumes as-is)."""
    out: dict[str, str] = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            source, target = str(vol["source"]), str(vol["target"])
        else:
            source, target = str(vol).split(":")[:2]
        if source.startswith((".", "/")):
            source = str((CONFIG / source).resolve())
        out[target] = source
    return out


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a container path comes from, through the service's bind mounts."""
    path = PurePosixPath(container_path)
    for target, source in sorted(_mounts(service).items(), key=lambda kv: -len(kv[0])):
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return Path(source) / path.relative_to(target)
    raise AssertionError(f"{container_path} is not bind-mounted from the repository")


def test_compose_services_and_named_volumes() -> None:
    doc = _compose()
    services = doc["services"]
    for name in SERVICES:
        assert name in services, f"service {name} missing"
    declared = set(doc.get("volumes") or {})
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for target, source in _mounts(svc).items():
            if source.startswith("/"):
                assert Path(source).exists(), f"{name}: mount source {source} ({target}) does not exist"
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"


def test_compose_gateway_is_built_from_the_repo_and_serves_the_mounted_config() -> None:
    gw = _compose()["services"]["gateway"]
    context = (CONFIG / gw["build"]["context"]).resolve()
    assert context == REPO
    assert (context / gw["build"].get("dockerfile", "Dockerfile")).is_file(), "the repository's Dockerfile"
    assert gw["command"] == ["gateway", "serve", "--config", "/app/gateway.yaml", "--host", "0.0.0.0"]
    assert _host_path(gw, "/app/gateway.yaml") == GATEWAY_COMPOSE_CONFIG
    assert "8080:8080" in gw["ports"]
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_gateway_config_loads_and_uses_redis() -> None:
    cfg = load_config(GATEWAY_COMPOSE_CONFIG, env={})
    assert cfg.redis is not None and cfg.redis.url == "redis://redis:6379/0"
    assert cfg.cache.backend == "redis"
    assert cfg.listen.port == 8080 and cfg.metrics.enabled
    assert "demo" in cfg.live_aliases()  # works with no provider API keys
    assert cfg.database.url.startswith("sqlite:////data/")
    gw = _compose()["services"]["gateway"]
    assert "/data" in _mounts(gw), "the ledger database lives on the gateway-data volume"


def test_compose_prometheus_mounts_its_rules_next_to_its_config() -> None:
    prom = _compose()["services"]["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prom["command"] if "=" in arg)
    config_in_container = flags["--config.file"]
    assert _host_path(prom, config_in_container) == PROMETHEUS_CONFIG
    cfg = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for rule_file in cfg["rule_files"]:
        in_container = str(PurePosixPath(config_in_container).parent / rule_file)
        assert _host_path(prom, in_container) == ALERTS
    targets = cfg["scrape_configs"][0]["static_configs"][0]["targets"]
    host, port = targets[0].split(":")
    assert host in _compose()["services"] and port == "8080"


def test_compose_alertmanager_secrets_are_mounted() -> None:
    am = _compose()["services"]["alertmanager"]
    flags = dict(arg.split("=", 1) for arg in am["command"] if "=" in arg)
    assert _host_path(am, flags["--config.file"]) == ALERTMANAGER
    cfg = yaml.safe_load(ALERTMANAGER.read_text())
    files = [c["routing_key_file"] for r in cfg["receivers"] for c in r.get("pagerduty_configs", [])]
    files += [c["api_url_file"] for r in cfg["receivers"] for c in r.get("slack_configs", [])]
    assert len(files) == 2
    for path in files:
        host = _host_path(am, path)
        assert host.parent == CONFIG / "secrets" and host.parent.is_dir(), path


def test_compose_grafana_provisions_the_dashboard() -> None:
    graf = _compose()["services"]["grafana"]
    assert _host_path(graf, "/etc/grafana/provisioning/datasources/prometheus.yml").is_file()
    prov_file = _host_path(graf, "/etc/grafana/provisioning/dashboards/gateway.yml")
    dashboards_dir = yaml.safe_load(prov_file.read_text())["providers"][0]["options"]["path"]
    assert _host_path(graf, f"{dashboards_dir}/gateway.json") == DASHBOARD
    home = graf["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home is None or _host_path(graf, home) == DASHBOARD


def test_alertmanager_routes_critical_to_pagerduty_and_everything_to_slack() -> None:
    cfg = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert "routing_key_file" in receivers["pagerduty"]["pagerduty_configs"][0]
    assert "routing_key" not in receivers["pagerduty"]["pagerduty_configs"][0]
    assert "api_url_file" in receivers["slack"]["slack_configs"][0]
    route = cfg["route"]
    assert route["receiver"] == "slack"
    first = route["routes"][0]
    assert first["receiver"] == "pagerduty" and first["matchers"] == ['severity="critical"']
    assert first["continue"] is True
    severities = {r["labels"]["severity"] for g in yaml.safe_load(ALERTS.read_text())["groups"]
                  for r in g["rules"]}
    assert severities <= {"critical", "warning"}


def test_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    """amtool comes from Debian's prometheus-alertmanager (scripts/install-system-deps.sh, run by `make test`):
    skipped when absent, a failure under CI=true."""
    amtool = shutil.which("amtool")
    if amtool is None:
        service_unavailable("amtool not installed (bash scripts/install-system-deps.sh)")
    proc = subprocess.run([amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_install_script_is_valid_bash_and_idempotent() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    subprocess.run([bash, "-n", str(INSTALL_SCRIPT)], check=True, timeout=30)
    text = INSTALL_SCRIPT.read_text()
    assert "apt-get update -qq" in text
    assert "apt-get install -y -qq --no-install-recommends" in text
    assert "DEBIAN_FRONTEND=noninteractive" in text
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", str(INSTALL_SCRIPT)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        if in_ci():
            pytest.fail("prometheus/promtool missing under CI: scripts/install-system-deps.sh did not run")
        pytest.skip("prometheus not installed; not running the installer from a test")
    # Everything is installed: a second run is a no-op that needs neither root nor the network.
    proc = subprocess.run([bash, str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr


def test_install_script_rejects_unknown_arguments() -> None:
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT), "--bogus"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr
