"""The provider registry: `type:` in gateway.yaml -> the folder that serves it, one line per provider.

Each folder's `__init__.py` exports `PROVIDER`, a `Registration`: its `type:`, its settings model (which
gateway.yaml's `providers:` entries of that type are validated by), its list prices (merged into the
default price table) and where its runtime lives. The runtime module is imported only when a provider of
that type is built, so a provider's optional package (botocore for bedrock) is needed only when one is
configured. Everything here runs at startup; the request path never looks a provider up by type.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from proxy.providers.base import Provider
from proxy.providers.settings import Price, ProviderConfig
from proxy.providers.transport import HttpProvider

# type -> the provider's folder. The order is the one `type:` errors list and the price table merges in.
PROVIDERS: dict[str, str] = {
    "openai": "proxy.providers.openai",
    "mock": "proxy.providers.mock",
    "anthropic": "proxy.providers.anthropic",
    "gemini": "proxy.providers.gemini",
    "azure": "proxy.providers.azure",
    "mistral": "proxy.providers.mistral",
    "ollama": "proxy.providers.ollama",
    "bedrock": "proxy.providers.bedrock",
    "cli": "proxy.providers.cli",
}


@dataclass(frozen=True, slots=True)
class Registration:
    """What a provider folder registers. `translator` ("module:Class") is a Translator run by the shared
    HttpProvider; `provider` ("module:Class") a Provider of its own (in-process ones, or HttpProvider
    subclasses). Exactly one of them is given."""

    type: str
    config: type[ProviderConfig]
    translator: str | None = None
    provider: str | None = None
    prices: Mapping[str, Price] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.translator is None) == (self.provider is None):
            raise ValueError(f"provider {self.type!r}: register exactly one of `translator` or `provider`")


@cache
def registration(type_: str) -> Registration:
    reg: Registration = importlib.import_module(PROVIDERS[type_]).PROVIDER
    if reg.type != type_:
        raise ValueError(f"{PROVIDERS[type_]} registers type {reg.type!r}, the registry line says {type_!r}")
    return reg


def settings_models() -> dict[str, type[ProviderConfig]]:
    """type -> its settings model, for gateway.yaml's `providers:` (proxy.config.ProviderTypes)."""
    return {t: registration(t).config for t in PROVIDERS}


def default_prices() -> dict[str, Price]:
    """Every provider's list prices in one table (proxy.metering.pricing). A model is listed by one provider."""
    out: dict[str, Price] = {}
    for t in PROVIDERS:
        prices = registration(t).prices
        if twice := out.keys() & prices.keys():
            raise ValueError(f"provider {t!r} lists prices another provider lists: {sorted(twice)}")
        out.update(prices)
    return out


def _load(ref: str) -> type:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def build_provider(name: str, cfg: ProviderConfig) -> Provider:
    reg = registration(cfg.type)
    if reg.provider is not None:
        return _load(reg.provider)(name, cfg)  # type: ignore[no-any-return]
    assert reg.translator is not None
    return HttpProvider(name, cfg, _load(reg.translator)(name, cfg))
