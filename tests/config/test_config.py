"""gateway.yaml: validation with errors naming the field, env interpolation, disabled providers."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import main, startup_banner
from proxy.config import ConfigError, load_config, parse_config
from proxy.core.units import parse_duration, parse_size

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_works_without_api_keys() -> None:
    cfg = load_config(ROOT / "gateway.yaml", env={})
    assert "demo" in cfg.live_aliases()
    assert cfg.models["demo"].route[0].provider == "mock"
    openai = cfg.providers["openai"]
    assert not openai.enabled and "OPENAI_API_KEY" in (openai.disabled_reason or "")
    assert cfg.keys[0].key == "sk-gateway-dev"  # ${GATEWAY_DEV_KEY:-sk-gateway-dev}
    banner = startup_banner(cfg, "127.0.0.1", 8080)
    assert "http://127.0.0.1:8080" in banner and "live aliases: demo" in banner
    assert "provider 'openai' (openai) disabled: env var not set: OPENAI_API_KEY" in banner


def test_env_enables_provider_and_interpolates() -> None:
    cfg = load_config(ROOT / "gateway.yaml", env={"OPENAI_API_KEY": "sk-real", "GATEWAY_DEV_KEY": "sk-mine"})
    assert cfg.providers["openai"].enabled and cfg.providers["openai"].api_key == "sk-real"
    assert "gpt-4o-mini" in cfg.live_aliases()
    assert cfg.keys[0].key == "sk-mine"


def test_interpolation_inside_strings_and_defaults() -> None:
    cfg = parse_config({
        "listen": {"host": "${HOST:-0.0.0.0}", "port": "${PORT:-9999}"},
        "providers": {"p": {"type": "openai", "base_url": "http://${UP_HOST}:1/v1"}},
    }, env={"UP_HOST": "upstream"})
    assert cfg.listen.host == "0.0.0.0" and cfg.listen.port == 9999
    assert cfg.providers["p"].base_url == "http://upstream:1/v1"


@pytest.mark.parametrize(("raw", "needle"), [
    ({"listen": {"port": "eighty"}}, "listen.port"),
    ({"providers": {"x": {"type": "nope"}}}, "providers.x.type"),
    ({"providers": {"x": {"type": "openai", "bogus": 1}}}, "providers.x.bogus"),
    ({"models": {"a": {"route": [{"provider": "ghost", "model": "m"}]}}}, "models.a.route.0.provider"),
    ({"models": {"a": {"route": []}}}, "models.a.route"),
    ({"keys": [{"name": "k"}]}, "keys.0"),
    ({"keys": [{"name": "k", "key_sha256": "zz"}]}, "key_sha256"),
    ({"cache": {"ttl": "forever"}}, "cache.ttl"),
    ({"listen": {"max_body_bytes": "10 potatoes"}}, "listen.max_body_bytes"),
    ({"providers": {"c": {"type": "cli"}}}, "providers.c"),
])
def test_invalid_config_names_the_field(raw: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={})
    assert needle in str(err.value)


def test_units() -> None:
    assert parse_duration("200ms") == 0.2 and parse_duration("7d") == 604800 and parse_duration(3) == 3
    assert parse_size("64MiB") == 64 * 1024 * 1024 and parse_size("10MB") == 10_000_000
    for bad in ("-1s", "1y", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError):
        parse_size("lots")


def test_cli_check_config_and_hash_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(ROOT / "gateway.yaml")]) == 0
    assert "live aliases" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [1, 2\n")
    assert main(["check-config", "--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["check-config", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["hash-key", "abc"]) == 0
    assert capsys.readouterr().out.strip() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
