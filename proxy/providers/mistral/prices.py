"""Mistral (La Plateforme) list prices, USD per million tokens."""

from __future__ import annotations

from proxy.providers.settings import Price as _P

PRICES: dict[str, _P] = {
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
