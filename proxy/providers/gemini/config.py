"""`type: gemini` settings: only the common ones (api_key, base_url, headers, timeout, ...)."""

from __future__ import annotations

from typing import Literal

from proxy.providers.settings import ProviderConfig


class GeminiConfig(ProviderConfig):
    type: Literal["gemini"] = "gemini"
