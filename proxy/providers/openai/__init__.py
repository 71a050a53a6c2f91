"""`type: openai`: any OpenAI-compatible `/v1` upstream (OpenAI, vLLM, Groq, Together, ...)."""

from proxy.providers.openai.config import OpenAIConfig
from proxy.providers.openai.prices import PRICES
from proxy.providers.registry import Registration

PROVIDER = Registration("openai", OpenAIConfig, translator="proxy.providers.openai.translator:OpenAITranslator",
                        prices=PRICES)
