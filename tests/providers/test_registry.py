"""The provider registry: one folder and one registry line per `type:`; gateway.yaml's provider settings and the
default price table come from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import proxy.providers
from proxy.config import ConfigError, parse_config
from proxy.metering.pricing import DEFAULT_PRICES, PriceTable
from proxy.providers.base import Provider
from proxy.providers.bedrock.provider import BedrockProvider
from proxy.providers.cli.provider import CLIProvider
from proxy.providers.mock.provider import MockProvider
from proxy.providers.ollama.translator import OllamaTranslator
from proxy.providers.registry import PROVIDERS, Registration, build_provider, default_prices, registration
from proxy.providers.settings import ProviderConfig
from proxy.providers.transport import HttpProvider

FOLDERS = Path(proxy.providers.__file__).parent

# the settings of each type that no other type has, with a valid value
OWN_FIELDS = {
    "anthropic": {"version": "2023-06-01", "default_max_tokens": 100},
    "azure": {"api_version": "2024-10-21", "azure_ad_token": "t", "base_url": "https://r.openai.azure.com"},
    "bedrock": {"region": "us-east-1", "access_key_id": "AKIA", "secret_access_key": "s", "session_token": "t"},
    "cli": {"command": ["llm", "-m", "{model}"], "max_concurrency": 2},
    "mock": {"mock": {"reply": "lorem"}},
}


def test_every_type_is_one_folder_of_the_same_shape() -> None:
    assert list(PROVIDERS) == ["openai", "mock", "anthropic", "gemini", "azure", "mistral", "ollama", "bedrock", "cli"]
    for type_, module in PROVIDERS.items():
        folder = FOLDERS / type_
        assert module == f"proxy.providers.{type_}" and (folder / "__init__.py").exists()
        assert (folder / "config.py").exists()
        reg = registration(type_)
        assert reg.type == type_ and reg.config.model_fields["type"].default == type_
        runtime = reg.translator or reg.provider
        assert runtime is not None and runtime.startswith(f"proxy.providers.{type_}.")
        assert importlib.util.find_spec(runtime.partition(":")[0]) is not None
        assert bool(reg.prices) == (folder / "prices.py").exists()


def test_each_type_takes_its_own_settings_and_names_another_types_field() -> None:
    for type_, fields in OWN_FIELDS.items():
        cfg = parse_config({"providers": {"p": {"type": type_, **fields}}})
        assert type(cfg.providers["p"]) is registration(type_).config
        assert all(getattr(cfg.providers["p"], k) is not None for k in fields)
    with pytest.raises(ConfigError, match=r"providers\.p\.region: Extra inputs are not permitted"):
        parse_config({"providers": {"p": {"type": "openai", "region": "us-east-1"}}})
    with pytest.raises(ConfigError, match=r"providers\.p\.max_concurrency: Input should be less than or equal"):
        parse_config({"providers": {"p": {"type": "cli", "command": ["x"], "max_concurrency": 5000}}})


def test_common_settings_and_disabling_work_for_every_type() -> None:
    raw = {"providers": {t: {"type": t, **OWN_FIELDS.get(t, {}), "api_key": "${UNSET_KEY_FOR_TEST}",
                             "timeout": "5s", "base_url": OWN_FIELDS.get(t, {}).get("base_url", "http://h/")}
                         for t in PROVIDERS}}
    cfg = parse_config(raw, env={})
    for t, p in cfg.providers.items():
        assert isinstance(p, ProviderConfig) and p.type == t
        assert p.timeout.total == 5 and not p.enabled and p.disabled_reason == "env var not set: UNSET_KEY_FOR_TEST"
    assert cfg.providers["openai"].base_url == "http://h"  # trailing slash dropped, for every type


def test_build_provider_runs_what_the_folder_registered() -> None:
    cfg = parse_config({"providers": {t: {"type": t, **OWN_FIELDS.get(t, {})} for t in PROVIDERS}})
    built = {name: build_provider(name, p) for name, p in cfg.providers.items()}
    assert all(isinstance(p, Provider) and p.type == name for name, p in built.items())
    assert isinstance(built["mock"], MockProvider) and isinstance(built["cli"], CLIProvider)
    assert isinstance(built["bedrock"], BedrockProvider)
    ollama = built["ollama"]
    assert type(ollama) is HttpProvider and isinstance(ollama.translator, OllamaTranslator)


def test_the_default_price_table_is_every_folders_prices() -> None:
    merged = {k: v for t in PROVIDERS for k, v in registration(t).prices.items()}
    assert DEFAULT_PRICES == merged and len(DEFAULT_PRICES) == sum(len(registration(t).prices) for t in PROVIDERS)
    table = PriceTable()
    assert table.lookup("p", "us.anthropic.claude-sonnet-4-20250514-v1:0") is registration("anthropic").prices[
        "claude-sonnet-4"]
    assert table.lookup("p", "amazon.nova-pro-v1:0") is registration("bedrock").prices["amazon.nova-pro"]


def test_a_model_priced_by_two_providers_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = {t: registration(t) for t in PROVIDERS}
    gpt_4o = real["openai"].prices["gpt-4o"]
    real["mistral"] = Registration("mistral", real["mistral"].config, translator="x:Y", prices={"gpt-4o": gpt_4o})
    monkeypatch.setattr("proxy.providers.registry.registration", real.__getitem__)
    with pytest.raises(ValueError, match=r"provider 'mistral' lists prices another provider lists: \['gpt-4o'\]"):
        default_prices()


def test_a_registration_names_exactly_one_runtime() -> None:
    for runtimes in ({}, {"translator": "a:B", "provider": "c:D"}):
        with pytest.raises(ValueError, match="exactly one of `translator` or `provider`"):
            Registration("x", ProviderConfig, **runtimes)


def test_a_registry_line_must_name_the_folder_of_its_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROVIDERS, "openai-compatible", "proxy.providers.openai")
    with pytest.raises(ValueError, match=r"proxy\.providers\.openai registers type 'openai', the registry line says"):
        registration("openai-compatible")
