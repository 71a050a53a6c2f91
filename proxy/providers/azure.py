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

import orjson

from proxy.core.errors import INVALID_REQUEST, NOT_FOUND, UpstreamError, upstream_error_from_status
from proxy.providers.base import JSON, StreamTranslator, UpstreamRequest, parse_retry_after
from proxy.providers.openai import OpenAIStream, OpenAITranslator, openai_error

STREAM_OPTIONS_SINCE = "2024-09-01"  # first api-version accepting `stream_options` (-preview, then GA 2024-10-21)


class AzureStream(OpenAIStream):
    look_for = (*OpenAIStream.look_for, b'"prompt_filter_results"')

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        if b'"prompt_filter_results"' in data and b'"prompt_tokens"' not in data:
            chunk = orjson.loads(data)
            if not chunk.get("choices"):
                return []  # annotation-only chunk (its `model` is also ""), see the module docstring
        return super().feed(event, data)


class AzureTranslator(OpenAITranslator):
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


def azure_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
    try:
        err = orjson.loads(data).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        err = None
    if not isinstance(err, dict):
        return openai_error(status, headers, data)
    message = str(err.get("message") or f"upstream status {status}")
    code = err.get("code") if isinstance(err.get("code"), str) else None
    inner = err.get("innererror") if isinstance(err.get("innererror"), dict) else {}
    if status == 400 and (code == "content_filter" or inner.get("code") == "ResponsibleAIPolicyViolation"):
        param = err.get("param") if isinstance(err.get("param"), str) else None
        return UpstreamError(400, message, kind="content_filter", retryable=False, type=INVALID_REQUEST,
                             code="content_filter", param=param, upstream_status=status)
    if code == "DeploymentNotFound":
        return UpstreamError(404, message, kind="not_found", retryable=False, type=NOT_FOUND,
                             code="model_not_found", upstream_status=status)
    if code is not None and code.isdigit():  # "401", "404", "429": not OpenAI codes
        return upstream_error_from_status(status, message, retry_after=parse_retry_after(headers))
    return openai_error(status, headers, data)
