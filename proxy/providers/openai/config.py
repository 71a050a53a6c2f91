"""`type: openai` settings: the common ones (base_url, api_key, headers, timeout, ...) and `responses`: `native`
when the upstream offers the Responses API itself (OpenAI does), so `/v1/responses` is forwarded to it untranslated
instead of being translated onto chat completions (`translate`, the default: any OpenAI-compatible server)."""

from __future__ import annotations

from typing import Literal

from proxy.providers.settings import ProviderConfig


class OpenAIConfig(ProviderConfig):
    type: Literal["openai"] = "openai"
    responses: Literal["translate", "native"] = "translate"
