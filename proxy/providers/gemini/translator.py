"""The Gemini translator (Google AI Developer API, `v1beta`): URLs, the `x-goog-api-key` header."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from proxy.core.errors import UpstreamError
from proxy.providers.base import JSON, Completion, StreamTranslator, Translator, UpstreamRequest
from proxy.providers.gemini import chat, embeddings
from proxy.providers.gemini.config import GeminiConfig
from proxy.providers.gemini.errors import gemini_error
from proxy.providers.gemini.stream import GeminiStream


class GeminiTranslator(Translator):
    cfg: GeminiConfig
    default_base_url = "https://generativelanguage.googleapis.com"

    def api_url(self) -> str:
        base = self.cfg.base_url or self.default_base_url
        return base if base.endswith(("/v1beta", "/v1")) else base + "/v1beta"

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.cfg.api_key:
            h["x-goog-api-key"] = self.cfg.api_key
        h.update(self.cfg.headers)
        return h

    def model_url(self, model: str, method: str) -> str:
        return f"{self.api_url()}/{embeddings.model_name(model)}:{method}"

    def chat_request(self, body: JSON, model: str, stream: bool) -> UpstreamRequest:
        url = self.model_url(model, "streamGenerateContent?alt=sse" if stream else "generateContent")
        return UpstreamRequest("POST", url, self.headers(), orjson.dumps(chat.build_request(body, model)))

    def chat_response(self, data: bytes, model: str) -> Completion:
        return chat.convert_response(orjson.loads(data), model)

    def stream_translator(self, body: JSON, model: str) -> StreamTranslator:
        return GeminiStream(body, model)

    def embeddings_request(self, body: JSON, model: str) -> UpstreamRequest:
        method, payload = embeddings.build_request(body, model)
        return UpstreamRequest("POST", self.model_url(model, method), self.headers(), orjson.dumps(payload))

    def embeddings_response_for(self, body: JSON, data: bytes, model: str) -> Completion:
        return embeddings.convert_response(orjson.loads(data), body, model)

    def embeddings_response(self, data: bytes, model: str) -> Completion:
        return embeddings.convert_response(orjson.loads(data), {}, model)

    def probe_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", self.api_url() + "/models", self.headers())

    def error(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
        return gemini_error(status, headers, data)
