"""`type: openai` settings: only the common ones (base_url, api_key, headers, timeout, ...)."""

from __future__ import annotations

from typing import Literal

from proxy.providers.settings import ProviderConfig


class OpenAIConfig(ProviderConfig):
    type: Literal["openai"] = "openai"
