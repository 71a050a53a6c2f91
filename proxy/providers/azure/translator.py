"""Azure OpenAI: the OpenAI wire format behind per-deployment URLs, `api-version` and `api-key`.

In a route the `model` is the Azure *deployment* name (also sent as the body's `model`, which
Azure ignores). Auth is the resource key (`api-key`
header) or, when `azure_ad_token` is set, a Microsoft Entra token (`Authorization: Bearer`).
Azure-specific pieces handled here:

* its content-filter errors (400, code `content_filter` or innererror `ResponsibleAIPolicyViolation`)
  become the gateway's `content_filter` kind, so `content_policy_fallbacks` can act on them;
* its numeric error codes (`"401"`, `"404"`) are not OpenAI codes and are replaced;
* its first stream chunk, which carries only `prompt_filter_results` and no choices, is dropped:
  OpenAI never sends such a chunk and many clients index `choices[0]` unconditionally;
* `api-version`s older than 2024-09-01 reject `stream_options`: it is not sent to them (stream
  usage is then unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from proxy.core.errors import UpstreamError
from proxy.providers.azure.config import AzureConfig
from proxy.providers.azure.errors import azure_error
from proxy.providers.azure.stream import AzureStream
from proxy.providers.base import JSON, StreamTranslator, UpstreamRequest
from proxy.providers.openai.translator import OpenAITranslator

STREAM_OPTIONS_SINCE = "2024-09-01"  # first api-version accepting `stream_options` (-preview, then GA 2024-10-21)


class AzureTranslator(OpenAITranslator):
    cfg: AzureConfig  # type: ignore[assignment]

    def base_url(self) -> str:
        base = self.cfg.base_url or ""
        return base.removesuffix("/openai")  # people paste the endpoint with or without it

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.cfg.azure_ad_token:
            h["Authorization"] = f"Bearer {self.cfg.azure_ad_token}"
        elif self.cfg.api_key:
            h["api-key"] = self.cfg.api_key
        h.update(self.cfg.headers)
        return h

    def prepare_body(self, body: JSON, model: str, stream: bool) -> JSON:
        out = super().prepare_body(body, model, stream)
        if self.cfg.api_version[:10] < STREAM_OPTIONS_SINCE:
            out.pop("stream_options", None)
        return out

    def _query(self) -> str:
        return "?api-version=" + quote(self.cfg.api_version, safe="")

    def _deployment_url(self, deployment: str, op: str) -> str:
        return f"{self.base_url()}/openai/deployments/{quote(deployment, safe='')}/{op}{self._query()}"

    def chat_url(self, model: str) -> str:
        return self._deployment_url(model, "chat/completions")

    def embeddings_url(self, model: str) -> str:
        return self._deployment_url(model, "embeddings")

    def stream_translator(self, body: JSON, model: str) -> StreamTranslator:
        return AzureStream(body, model)

    def probe_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", f"{self.base_url()}/openai/models{self._query()}", self.headers())

    def error(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
        return azure_error(status, headers, data)
