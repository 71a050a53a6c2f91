"""`gateway serve` refuses documented default keys on a non-loopback address (exit 2, naming the variable
to set) unless `--allow-dev-keys`; the container files take their keys from the environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy import cli
from proxy.auth.authenticator import DOCUMENTED_DEFAULT_KEYS
from proxy.core.identity import sha256_hex

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "gateway.yaml"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Stands in for the server: records where `serve` would have listened."""
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(cli, "_serve_one", lambda cfg, reuse_port: calls.append((cfg.listen.host, cfg.listen.port)))
    for var in DOCUMENTED_DEFAULT_KEYS.values():
        monkeypatch.delenv(var, raising=False)
    return calls


def test_shipped_config_on_a_public_address_is_refused(served: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--config", str(SHIPPED), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "keys.0 (dev): set GATEWAY_DEV_KEY" in err and "admin.key: set GATEWAY_ADMIN_KEY" in err
    assert "--allow-dev-keys" in err
    assert not any(secret in err for secret in DOCUMENTED_DEFAULT_KEYS)  # named by place, not by value
    assert served == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_serves_with_the_defaults(served: list[Any], host: str) -> None:
    assert cli.main(["serve", "--config", str(SHIPPED), "--host", host, "--port", "18080"]) == 0
    assert served == [(host, 18080)]


def test_allow_dev_keys_serves_anyway(served: list[Any]) -> None:
    assert cli.main(["serve", "--config", str(SHIPPED), "--host", "0.0.0.0", "--allow-dev-keys"]) == 0
    assert served == [("0.0.0.0", 8080)]


def test_own_secrets_from_the_environment_serve(served: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DEV_KEY", "sk-mine-1234")
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", "sk-admin-5678")
    assert cli.main(["serve", "--config", str(SHIPPED), "--host", "0.0.0.0"]) == 0
    assert served == [("0.0.0.0", 8080)]


def test_hashed_default_and_listen_host_from_the_file(served: list[Any], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump({
        "listen": {"host": "192.0.2.10"},
        "providers": {"mock": {"type": "mock"}},
        "keys": [{"name": "ok", "key": "sk-something-else"},
                 {"name": "ci", "key_sha256": sha256_hex("sk-gateway-dev").upper()}]}))
    assert cli.main(["serve", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "on 192.0.2.10" in err and "keys.1 (ci): set GATEWAY_DEV_KEY" in err and "keys.0" not in err


def test_the_real_command_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if k not in DOCUMENTED_DEFAULT_KEYS.values()}
    r = subprocess.run([sys.executable, "-m", "proxy", "serve", "--config", str(SHIPPED), "--host", "0.0.0.0"],
                       env=env, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 2 and "GATEWAY_DEV_KEY" in r.stderr


def test_every_documented_default_is_in_the_list() -> None:
    """A default key written in README, docs/ or the shipped configs must be in DOCUMENTED_DEFAULT_KEYS,
    paired with the variable that replaces it."""
    files = [ROOT / "README.md", SHIPPED, *ROOT.glob("docs/*.md"), *ROOT.glob("config/*.y*ml")]
    found = set()
    for f in files:
        for var, default in re.findall(r"\$\{([A-Z0-9_]+):-(sk-[^}]*)\}", f.read_text()):
            found.add(default)
            assert DOCUMENTED_DEFAULT_KEYS.get(default) == var, f"{f.name}: ${{{var}:-{default}}}"
    assert found == set(DOCUMENTED_DEFAULT_KEYS)


def test_container_files_take_keys_from_the_environment() -> None:
    compose = yaml.safe_load((ROOT / "config" / "docker-compose.yml").read_text())
    env = compose["services"]["gateway"]["environment"]
    for var in DOCUMENTED_DEFAULT_KEYS.values():
        assert re.fullmatch(rf"\$\{{{var}:\?.+\}}", env[var]), env[var]  # compose stops when it is unset
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not any(secret in dockerfile for secret in DOCUMENTED_DEFAULT_KEYS)
    assert "--allow-dev-keys" not in dockerfile


def test_documented_default_in_the_admin_keys_list_is_refused(served: list[Any], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = {"keys": [{"name": "dev", "key": "sk-mine-1234"}],
           "admin": {"keys": [{"name": "ops", "key": "sk-own-admin-key"},
                              {"name": "old", "key_sha256": sha256_hex("sk-gateway-admin")}]}}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli.main(["serve", "--config", str(path), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "admin.keys.1 (old): set GATEWAY_ADMIN_KEY" in err and "admin.keys.0" not in err
    assert served == []
