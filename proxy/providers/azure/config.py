"""`type: azure` settings: the resource URL (required), `api_version`, and a key or an Entra token."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from proxy.providers.settings import ProviderConfig


class AzureConfig(ProviderConfig):
    type: Literal["azure"] = "azure"
    api_version: str = "2024-10-21"
    azure_ad_token: str | None = None

    @model_validator(mode="after")
    def _needs_base_url(self) -> AzureConfig:
        if not self.base_url:
            raise ValueError("type azure needs `base_url: https://<resource>.openai.azure.com`")
        return self
