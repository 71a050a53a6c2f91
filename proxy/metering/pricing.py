"""USD prices per upstream model and the cost of a call.

Prices are USD per million tokens: input (prompt), output (completion), cached input (prompt tokens read
from the provider's prompt cache) and cache write (prompt tokens written to it: Anthropic and Bedrock bill
those above the input price). A model without a cached or cache-write price bills those tokens at its
input price. Built-in list prices (each provider folder's prices.py, merged by proxy/providers/registry.py)
cover the common OpenAI, Anthropic, Gemini and Mistral models and the Bedrock-native ones (Claude, Llama,
Mistral, Titan, Nova); `pricing:` in gateway.yaml overrides or adds entries, keyed by `model` or
`provider/model`.

Upstream model names carry dates and suffixes (`gpt-4o-2024-08-06`, `claude-3-5-haiku-latest`,
`models/gemini-2.0-flash-001`, Bedrock's `us.anthropic.claude-...-v1:0`), so a name that is not in the
table exactly is matched to the longest table entry it starts with, after dropping a vendor prefix
(`models/`, `anthropic.`...) and a Bedrock cross-region prefix (`us.`, `eu.`, `apac.`...).

No silent $0: a call whose model has no price is counted in `gateway_unpriced_calls_total{provider,
upstream_model}` and logged once per model and process (`unpriced_model`); `gateway check-config` lists
the aliases concerned. Models of `type: mock` providers are free by design: priced 0, not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.providers.registry import default_prices
from proxy.providers.settings import Price

if TYPE_CHECKING:
    from proxy.config import GatewayConfig
    from proxy.core.context import RequestContext
    from proxy.providers.base import Usage

log = get_logger("gateway.pricing")

# USD per 1M tokens: each provider folder's prices.py (list prices, on-demand, standard tier), merged by the registry
DEFAULT_PRICES: dict[str, Price] = default_prices()
FREE = Price(input=0.0, output=0.0)

_SEPARATORS = ("-", ":", "@", ".", "_")
# dropped before matching; Bedrock's `meta.` / `mistral.` / `amazon.` stay: their prices differ from the
# vendors' own APIs, so the table names them with the namespace
_VENDOR_PREFIXES = ("models/", "anthropic.", "openai/", "google/", "anthropic/", "mistralai/")
# Bedrock cross-region inference profiles: `us.anthropic.claude-...`, `eu.meta.llama3-...`
_BEDROCK_GEOS = frozenset(("us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"))


def cost_of(price: Price, usage: Usage) -> float:
    """Cache reads and writes are part of the prompt (providers' usage is normalised that way)."""
    prompt = usage.prompt_tokens
    cached = min(usage.cached_tokens, prompt)
    written = min(usage.cache_write_tokens, prompt - cached)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    return ((prompt - cached - written) * price.input + cached * cached_rate + written * write_rate
            + usage.completion_tokens * price.output) / 1_000_000


def bare_name(model: str) -> str:
    """The name matched against the table: without a Bedrock cross-region prefix or a vendor prefix."""
    geo, dot, rest = model.partition(".")
    if dot and geo in _BEDROCK_GEOS and "." in rest:
        model = rest
    for prefix in _VENDOR_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix):]
    return model


class PriceTable:
    def __init__(self, overrides: dict[str, Price] | None = None, free: frozenset[str] = frozenset()) -> None:
        self.overrides = dict(overrides or {})
        self.defaults = DEFAULT_PRICES
        self.free = free  # provider names whose models cost nothing unless a table names them (mocks)
        # (provider, model) -> Price | None: the prefix search runs once per distinct pair
        self._resolved: dict[tuple[str, str], Price | None] = {}
        # (provider, model) -> the unpriced counter's increment, or None for a priced pair
        self._unpriced: dict[tuple[str, str], Callable[[float], None] | None] = {}

    @classmethod
    def from_config(cls, cfg: GatewayConfig) -> PriceTable:
        return cls(cfg.pricing, frozenset(n for n, p in cfg.providers.items() if p.type == "mock"))

    def lookup(self, provider: str, model: str) -> Price | None:
        pair = (provider, model)
        try:
            return self._resolved[pair]
        except KeyError:
            pass
        price = self._find(provider, model)
        if len(self._resolved) < 10_000:  # model names come from config, but stay bounded anyway
            self._resolved[pair] = price
        return price

    def _find(self, provider: str, model: str) -> Price | None:
        for table in (self.overrides, self.defaults):
            for name in (f"{provider}/{model}", model):
                if name in table:
                    return table[name]
        bare = bare_name(model)
        # the longest entry the name starts with, over both tables (an override of `gpt-4o` must not
        # capture `gpt-4o-mini-...`); on a tie the override wins
        best: tuple[int, int] | None = None
        found: Price | None = None
        for rank, table in enumerate((self.overrides, self.defaults)):
            for name, price in table.items():
                owner, _, entry = name.rpartition("/")
                if owner and owner != provider:
                    continue  # another provider's entry
                if bare == entry or (bare.startswith(entry) and bare[len(entry)] in _SEPARATORS):
                    score = (len(entry), -rank)
                    if best is None or score > best:
                        best, found = score, price
        if found is None and provider in self.free:
            return FREE
        return found

    def cost(self, provider: str, model: str, usage: Usage) -> float:
        price = self.lookup(provider, model)
        return 0.0 if price is None else cost_of(price, usage)

    def estimate(self, provider: str, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Upper-bound-ish cost of a call before it is made (budget reservations)."""
        price = self.lookup(provider, model)
        if price is None:
            return 0.0
        return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000

    def count_unpriced(self, ctx: RequestContext) -> None:
        """Meter.unpriced callback, for a call that reached an upstream and cost $0: counted (and logged
        once per model) when that $0 is a missing price rather than a free or empty call."""
        pair = (ctx.provider, ctx.upstream_model)
        try:
            inc = self._unpriced[pair]
        except KeyError:
            inc = None
            if self.lookup(*pair) is None:
                inc = m.UNPRICED.labels(*pair).inc
                log.warning("unpriced_model", provider=pair[0], upstream_model=pair[1],
                            hint="calls to it count as $0; give it a price under `pricing:` in gateway.yaml")
            if len(self._unpriced) < 10_000:
                self._unpriced[pair] = inc
        if inc is not None:
            inc(1)


def unpriced_routes(cfg: GatewayConfig, table: PriceTable) -> dict[str, list[str]]:
    """alias -> the `provider/model`s of its route that have no price (`gateway check-config`)."""
    out: dict[str, list[str]] = {}
    for alias, spec in cfg.models.items():
        missing = [f"{d.provider}/{d.model}" for d in spec.route if table.lookup(d.provider, d.model) is None]
        if missing:
            out[alias] = missing
    return out
