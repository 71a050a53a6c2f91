"""USD prices per upstream model and the cost of a call.

Prices are USD per million tokens: input (prompt), output (completion), cached input (prompt tokens read
from the provider's prompt cache) and cache write (prompt tokens written to it: Anthropic and Bedrock bill
those above the input price). A model without a cached or cache-write price bills those tokens at its
input price. Built-in list prices cover the common OpenAI, Anthropic, Gemini and Mistral models and the
Bedrock-native ones (Claude, Llama, Mistral, Titan, Nova); `pricing:` in gateway.yaml overrides or adds
entries, keyed by `model` or `provider/model`.

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

from proxy.config import Price
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

if TYPE_CHECKING:
    from proxy.config import GatewayConfig
    from proxy.core.context import RequestContext
    from proxy.providers.base import Usage

log = get_logger("gateway.pricing")
_P = Price

# USD per 1M tokens, list prices of each vendor (on-demand, standard tier)
DEFAULT_PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5": _P(input=1.25, output=10.0, cached_input=0.125),
    "gpt-5-mini": _P(input=0.25, output=2.0, cached_input=0.025),
    "gpt-5-nano": _P(input=0.05, output=0.40, cached_input=0.005),
    "gpt-4.1": _P(input=2.0, output=8.0, cached_input=0.50),
    "gpt-4.1-mini": _P(input=0.40, output=1.60, cached_input=0.10),
    "gpt-4.1-nano": _P(input=0.10, output=0.40, cached_input=0.025),
    "gpt-4o": _P(input=2.50, output=10.0, cached_input=1.25),
    "gpt-4o-mini": _P(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4-turbo": _P(input=10.0, output=30.0),
    "gpt-4": _P(input=30.0, output=60.0),
    "gpt-3.5-turbo": _P(input=0.50, output=1.50),
    "o1": _P(input=15.0, output=60.0, cached_input=7.50),
    "o1-mini": _P(input=1.10, output=4.40, cached_input=0.55),
    "o3": _P(input=2.0, output=8.0, cached_input=0.50),
    "o3-mini": _P(input=1.10, output=4.40, cached_input=0.55),
    "o4-mini": _P(input=1.10, output=4.40, cached_input=0.275),
    "text-embedding-3-small": _P(input=0.02, output=0.0),
    "text-embedding-3-large": _P(input=0.13, output=0.0),
    "text-embedding-ada-002": _P(input=0.10, output=0.0),
    # Anthropic, also on Bedrock (`anthropic.` ids): cache reads 0.1x input, 5-minute cache writes 1.25x
    "claude-opus-4-5": _P(input=5.0, output=25.0, cached_input=0.50, cache_write=6.25),
    "claude-opus-4": _P(input=15.0, output=75.0, cached_input=1.50, cache_write=18.75),
    "claude-sonnet-4": _P(input=3.0, output=15.0, cached_input=0.30, cache_write=3.75),
    "claude-haiku-4-5": _P(input=1.0, output=5.0, cached_input=0.10, cache_write=1.25),
    "claude-3-7-sonnet": _P(input=3.0, output=15.0, cached_input=0.30, cache_write=3.75),
    "claude-3-5-sonnet": _P(input=3.0, output=15.0, cached_input=0.30, cache_write=3.75),
    "claude-3-5-haiku": _P(input=0.80, output=4.0, cached_input=0.08, cache_write=1.0),
    "claude-3-opus": _P(input=15.0, output=75.0, cached_input=1.50, cache_write=18.75),
    "claude-3-haiku": _P(input=0.25, output=1.25, cached_input=0.03, cache_write=0.30),
    "claude-2": _P(input=8.0, output=24.0),
    "claude-v2": _P(input=8.0, output=24.0),  # Bedrock's id for Claude 2.x
    "claude-instant": _P(input=0.80, output=2.40),
    # Google Gemini (prompts up to 200k tokens)
    "gemini-2.5-pro": _P(input=1.25, output=10.0, cached_input=0.31),
    "gemini-2.5-flash": _P(input=0.30, output=2.50, cached_input=0.075),
    "gemini-2.5-flash-lite": _P(input=0.10, output=0.40, cached_input=0.025),
    "gemini-2.0-flash": _P(input=0.10, output=0.40, cached_input=0.025),
    "gemini-2.0-flash-lite": _P(input=0.075, output=0.30),
    "gemini-1.5-pro": _P(input=1.25, output=5.0, cached_input=0.3125),
    "gemini-1.5-flash": _P(input=0.075, output=0.30, cached_input=0.01875),
    "gemini-embedding-001": _P(input=0.15, output=0.0),
    "text-embedding-004": _P(input=0.0, output=0.0),
    # Mistral
    "mistral-large": _P(input=2.0, output=6.0),
    "mistral-medium": _P(input=0.40, output=2.0),
    "mistral-small": _P(input=0.10, output=0.30),
    "codestral": _P(input=0.30, output=0.90),
    "pixtral-large": _P(input=2.0, output=6.0),
    "open-mistral-nemo": _P(input=0.15, output=0.15),
    "ministral-8b": _P(input=0.10, output=0.10),
    "ministral-3b": _P(input=0.04, output=0.04),
    "mistral-embed": _P(input=0.10, output=0.0),
    # Bedrock-native ids (us-east-1 on-demand), matched with their namespace
    "meta.llama3-8b-instruct": _P(input=0.30, output=0.60),
    "meta.llama3-70b-instruct": _P(input=2.65, output=3.50),
    "meta.llama3-1-8b-instruct": _P(input=0.22, output=0.22),
    "meta.llama3-1-70b-instruct": _P(input=0.72, output=0.72),
    "meta.llama3-1-405b-instruct": _P(input=2.40, output=2.40),
    "meta.llama3-2-1b-instruct": _P(input=0.10, output=0.10),
    "meta.llama3-2-3b-instruct": _P(input=0.15, output=0.15),
    "meta.llama3-2-11b-instruct": _P(input=0.16, output=0.16),
    "meta.llama3-2-90b-instruct": _P(input=0.72, output=0.72),
    "meta.llama3-3-70b-instruct": _P(input=0.72, output=0.72),
    "meta.llama4-scout-17b-instruct": _P(input=0.17, output=0.66),
    "meta.llama4-maverick-17b-instruct": _P(input=0.24, output=0.97),
    "mistral.mistral-7b-instruct": _P(input=0.15, output=0.20),
    "mistral.mixtral-8x7b-instruct": _P(input=0.45, output=0.70),
    "mistral.mistral-small-2402": _P(input=1.0, output=3.0),
    "mistral.mistral-large-2402": _P(input=4.0, output=12.0),
    "mistral.mistral-large-2407": _P(input=2.0, output=6.0),
    "mistral.pixtral-large-2502": _P(input=2.0, output=6.0),
    "amazon.titan-text-lite": _P(input=0.15, output=0.20),
    "amazon.titan-text-express": _P(input=0.20, output=0.60),
    "amazon.titan-text-premier": _P(input=0.50, output=1.50),
    "amazon.titan-embed-text-v1": _P(input=0.10, output=0.0),
    "amazon.titan-embed-text-v2": _P(input=0.02, output=0.0),
    "amazon.titan-embed-image-v1": _P(input=0.80, output=0.0),  # text tokens; images are billed apart
    # Nova: cache reads 0.25x input, cache writes at the input price
    "amazon.nova-micro": _P(input=0.035, output=0.14, cached_input=0.00875),
    "amazon.nova-lite": _P(input=0.06, output=0.24, cached_input=0.015),
    "amazon.nova-pro": _P(input=0.80, output=3.20, cached_input=0.20),
    "amazon.nova-premier": _P(input=2.50, output=12.50, cached_input=0.625),
}
FREE = _P(input=0.0, output=0.0)

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

    def price(self, ctx: RequestContext) -> float:
        """Meter.price callback. A cache hit costs nothing; what it would have cost is its saving."""
        if ctx.usage is None:
            return 0.0
        value = self.cost(ctx.provider, ctx.upstream_model, ctx.usage)
        if ctx.cache_status == "hit":
            if not ctx.saved_usd:
                ctx.saved_usd = value
            return 0.0
        return value

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
