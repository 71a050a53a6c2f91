"""Google Gemini list prices, USD per million tokens."""

from __future__ import annotations

from proxy.providers.settings import Price as _P

PRICES: dict[str, _P] = {
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
}
