"""`type: mistral` settings: only the common ones (api_key, base_url, headers, timeout, ...)."""

from __future__ import annotations

from typing import Literal

from proxy.providers.settings import ProviderConfig


class MistralConfig(ProviderConfig):
    type: Literal["mistral"] = "mistral"
