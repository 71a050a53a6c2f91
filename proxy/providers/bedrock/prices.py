"""Bedrock list prices of the models only Bedrock serves, USD per million tokens (Claude: anthropic/prices.py)."""

from __future__ import annotations

from proxy.providers.settings import Price as _P

PRICES: dict[str, _P] = {
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
