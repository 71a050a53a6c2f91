"""`type: ollama` settings: only the common ones (`base_url` defaults to http://127.0.0.1:11434)."""

from __future__ import annotations

from typing import Literal

from proxy.providers.settings import ProviderConfig


class OllamaConfig(ProviderConfig):
    type: Literal["ollama"] = "ollama"
