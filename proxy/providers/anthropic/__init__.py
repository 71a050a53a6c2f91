"""Anthropic Messages API (`type: anthropic`): api.py (translator, errors), chat.py (request and
response mapping), stream.py (SSE events -> OpenAI chunks)."""

from proxy.providers.anthropic.api import AnthropicTranslator

__all__ = ["AnthropicTranslator"]
