"""OpenAI list prices, USD per million tokens (on-demand, standard tier)."""

from __future__ import annotations

from proxy.providers.settings import Price as _P

PRICES: dict[str, _P] = {
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
}
