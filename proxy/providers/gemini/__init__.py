"""Google AI Gemini API (`type: gemini`): api.py (translator), chat.py (generateContent mapping),
schema.py (JSON Schema -> Gemini Schema), stream.py (SSE -> OpenAI chunks), embeddings.py, errors.py."""

from proxy.providers.gemini.api import GeminiTranslator

__all__ = ["GeminiTranslator"]
