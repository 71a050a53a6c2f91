"""`type: ollama`: Ollama's OpenAI-compatible `/v1`, an OpenAI dialect (builds on the openai folder's translator)."""

from proxy.providers.ollama.config import OllamaConfig
from proxy.providers.registry import Registration

PROVIDER = Registration("ollama", OllamaConfig, translator="proxy.providers.ollama.translator:OllamaTranslator")
