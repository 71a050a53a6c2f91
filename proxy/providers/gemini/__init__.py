"""`type: gemini`: the Google AI Gemini API. translator.py (URLs, headers), chat.py (generateContent
mapping), schema.py (JSON Schema -> Gemini Schema), stream.py (SSE -> OpenAI chunks), embeddings.py,
errors.py."""

from proxy.providers.gemini.config import GeminiConfig
from proxy.providers.gemini.prices import PRICES
from proxy.providers.registry import Registration

PROVIDER = Registration("gemini", GeminiConfig, translator="proxy.providers.gemini.translator:GeminiTranslator",
                        prices=PRICES)
