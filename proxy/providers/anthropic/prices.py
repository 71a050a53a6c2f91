"""Anthropic list prices, USD per million tokens; the same models on Bedrock (`anthropic.` ids) match them."""

from __future__ import annotations

from proxy.providers.settings import Price as _P

PRICES: dict[str, _P] = {
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
}
