"""`type: mistral`: La Plateforme, an OpenAI dialect (builds on the openai folder's translator)."""

from proxy.providers.mistral.config import MistralConfig
from proxy.providers.mistral.prices import PRICES
from proxy.providers.registry import Registration

PROVIDER = Registration("mistral", MistralConfig, translator="proxy.providers.mistral.translator:MistralTranslator",
                        prices=PRICES)
