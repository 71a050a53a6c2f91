"""USD prices per upstream model and the cost of a call.

Prices are USD per million tokens: input (prompt), output (completion) and cached input (prompt tokens
served from the provider's prompt cache; billed at the input price when a model has no cached price).
Built-in defaults cover the common OpenAI, Anthropic, Gemini and Mistral models; `pricing:` in
gateway.yaml overrides or adds entries, keyed by `model` or `provider/model`.

Upstream model names carry dates and suffixes (`gpt-4o-2024-08-06`, `claude-3-5-haiku-latest`,
`models/gemini-2.0-flash-001`, Bedrock's `anthropic.claude-...-v1:0`), so a name that is not in the
table exactly is matched to the longest table entry it starts with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.config import Price

if TYPE_CHECKING:
    from proxy.core.context import RequestContext
    from proxy.providers.base import Usage

_P = Price

# (input, output, cached input) USD per 1M tokens, list prices of each vendor
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
    # Anthropic (cached input = cache reads)
    "claude-opus-4": _P(input=15.0, output=75.0, cached_input=1.50),
    "claude-sonnet-4": _P(input=3.0, output=15.0, cached_input=0.30),
    "claude-haiku-4-5": _P(input=1.0, output=5.0, cached_input=0.10),
    "claude-3-7-sonnet": _P(input=3.0, output=15.0, cached_input=0.30),
    "claude-3-5-sonnet": _P(input=3.0, output=15.0, cached_input=0.30),
    "claude-3-5-haiku": _P(input=0.80, output=4.0, cached_input=0.08),
    "claude-3-opus": _P(input=15.0, output=75.0, cached_input=1.50),
    "claude-3-haiku": _P(input=0.25, output=1.25, cached_input=0.03),
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
}

_SEPARATORS = ("-", ":", "@", ".", "_")
_VENDOR_PREFIXES = ("models/", "anthropic.", "us.anthropic.", "eu.anthropic.", "mistral.", "openai/",
                    "google/", "anthropic/", "mistralai/")


def cost_of(price: Price, usage: Usage) -> float:
    cached = min(usage.cached_tokens, usage.prompt_tokens)  # cached tokens are part of the prompt
    cached_rate = price.input if price.cached_input is None else price.cached_input
    return ((usage.prompt_tokens - cached) * price.input + cached * cached_rate
            + usage.completion_tokens * price.output) / 1_000_000


class PriceTable:
    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.defaults = DEFAULT_PRICES
        # (provider, model) -> Price | None: the prefix search runs once per distinct pair
        self._resolved: dict[tuple[str, str], Price | None] = {}

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
        bare = model
        for prefix in _VENDOR_PREFIXES:
            if bare.startswith(prefix):
                bare = bare[len(prefix):]
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
