"""`type: anthropic`: the Messages API. translator.py (URL, headers), chat.py (request and response
mapping), stream.py (SSE events -> OpenAI chunks), errors.py."""

from proxy.providers.anthropic.config import AnthropicConfig
from proxy.providers.anthropic.prices import PRICES
from proxy.providers.registry import Registration

PROVIDER = Registration("anthropic", AnthropicConfig,
                        translator="proxy.providers.anthropic.translator:AnthropicTranslator", prices=PRICES)
