"""`type: anthropic` settings: the `anthropic-version` header and the max_tokens sent when the client gives none."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from proxy.providers.settings import ProviderConfig


class AnthropicConfig(ProviderConfig):
    type: Literal["anthropic"] = "anthropic"
    version: str = "2023-06-01"
    default_max_tokens: int = Field(4096, ge=1)
