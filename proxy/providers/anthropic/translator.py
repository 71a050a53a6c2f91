"""The Anthropic translator: where to send (`POST /v1/messages`), with which headers."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from proxy.core.context import Native
from proxy.core.errors import UpstreamError
from proxy.providers.anthropic import messages
from proxy.providers.anthropic.chat import build_request, convert_response
from proxy.providers.anthropic.config import AnthropicConfig
from proxy.providers.anthropic.errors import anthropic_error
from proxy.providers.anthropic.stream import AnthropicStream
from proxy.providers.base import JSON, Completion, NativeStream, StreamTranslator, Translator, UpstreamRequest


class AnthropicTranslator(Translator):
    cfg: AnthropicConfig
    default_base_url = "https://api.anthropic.com"

    def base_url(self) -> str:
        base = self.cfg.base_url or self.default_base_url
        return base[:-3] if base.endswith("/v1") else base  # accept the SDK-style ".../v1" too

    def headers(self) -> dict[str, str]:
        h = {"content-type": "application/json", "anthropic-version": self.cfg.version}
        if self.cfg.api_key:
            h["x-api-key"] = self.cfg.api_key
        h.update(self.cfg.headers)
        return h

    def chat_request(self, body: JSON, model: str, stream: bool) -> UpstreamRequest:
        payload = build_request(body, model, stream, self.cfg.default_max_tokens)
        url = self.base_url() + "/v1/messages"
        return UpstreamRequest("POST", url, self.headers(), orjson.dumps(payload))

    def chat_response(self, data: bytes, model: str) -> Completion:
        return convert_response(orjson.loads(data), model)

    def stream_translator(self, body: JSON, model: str) -> StreamTranslator:
        return AnthropicStream(body, model)

    # the Messages API is this upstream's own: /v1/messages and count_tokens go as is (messages.py)
    native_wires = messages.WIRES

    def native_request(self, native: Native, model: str, stream: bool) -> UpstreamRequest:
        path = "/v1/messages/count_tokens" if native.wire == messages.COUNT_TOKENS else "/v1/messages"
        return UpstreamRequest("POST", self.base_url() + path, messages.headers(self.headers(), native),
                               messages.request_body(native, model, stream))

    def native_response(self, wire: str, data: bytes, model: str) -> Completion:
        return messages.response(wire, data, model)

    def native_stream(self, wire: str, body: JSON, model: str) -> NativeStream:
        return messages.MessagesRelay(body, model)

    def probe_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", self.base_url() + "/v1/models", self.headers())

    def error(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
        return anthropic_error(status, headers, data)
