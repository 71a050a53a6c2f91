"""Provider registry: `type:` in gateway.yaml -> the runtime Provider that serves it."""

from __future__ import annotations

import importlib

from proxy.config import ProviderConfig
from proxy.providers.base import Provider, Translator
from proxy.providers.transport import HttpProvider

# type -> "module:Translator" for HTTP providers (imported lazily: optional extras stay optional)
TRANSLATORS = {
    "openai": "openai:OpenAITranslator",
    "anthropic": "anthropic:AnthropicTranslator",
    "gemini": "gemini:GeminiTranslator",
    "azure": "azure:AzureTranslator",
    "mistral": "mistral:MistralTranslator",
    "ollama": "ollama:OllamaTranslator",
    "bedrock": "bedrock:BedrockTranslator",
}
# type -> "module:Provider" for providers that do not speak HTTP
RUNTIMES = {
    "mock": "mock.provider:MockProvider",
    "cli": "cli:CLIProvider",
    "bedrock": "bedrock:BedrockProvider",  # HttpProvider + one Titan call per embeddings input
}


def _load(ref: str) -> type:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)  # type: ignore[no-any-return]


def build_provider(name: str, cfg: ProviderConfig) -> Provider:
    if cfg.type in RUNTIMES:
        return _load(RUNTIMES[cfg.type])(name, cfg)  # type: ignore[no-any-return]
    translator_cls: type[Translator] = _load(TRANSLATORS[cfg.type])
    return HttpProvider(name, cfg, translator_cls(name, cfg))
