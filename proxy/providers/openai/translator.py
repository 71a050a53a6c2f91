"""OpenAI wire format: near pass-through. Covers every OpenAI-compatible upstream (`type: openai`).

Unknown request fields are forwarded untouched; only `model` is rewritten and, for streams,
`stream_options.include_usage` forced on so usage can be metered (the extra chunk is dropped again
when the client did not ask for it, stream.py). Response bytes are forwarded as the upstream sent them.
Azure, Mistral and Ollama are dialects of it and build on this translator (the one provider -> provider
dependency the import contracts allow).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from proxy.core.context import Native
from proxy.core.errors import UpstreamError
from proxy.providers.base import (
    JSON,
    Completion,
    NativeStream,
    StreamTranslator,
    Translator,
    UpstreamRequest,
    Usage,
)
from proxy.providers.openai import responses
from proxy.providers.openai.config import OpenAIConfig
from proxy.providers.openai.errors import openai_error
from proxy.providers.openai.stream import OpenAIStream
from proxy.providers.settings import ProviderConfig


class OpenAITranslator(Translator):
    cfg: OpenAIConfig
    default_base_url = "https://api.openai.com/v1"

    def __init__(self, name: str, cfg: ProviderConfig) -> None:
        super().__init__(name, cfg)
        if getattr(cfg, "responses", None) == "native":  # the upstream has /responses: forward that API as is
            self.native_wires = frozenset({responses.WIRE})

    def native_request(self, native: Native, model: str, stream: bool) -> UpstreamRequest:
        return UpstreamRequest("POST", self.base_url() + "/responses", self.headers(),
                               responses.request_body(native.body, model, stream))

    def native_response(self, wire: str, data: bytes, model: str) -> Completion:
        return responses.response(data, model)

    def native_stream(self, wire: str, body: JSON, model: str) -> NativeStream:
        return responses.ResponsesRelay(body, model)

    def base_url(self) -> str:
        return self.cfg.base_url or self.default_base_url

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.cfg.api_key:
            h["Authorization"] = f"Bearer {self.cfg.api_key}"
        h.update(self.cfg.headers)
        return h

    def prepare_body(self, body: JSON, model: str, stream: bool) -> JSON:
        """The body to send; subclasses drop fields their upstream rejects."""
        out = dict(body)
        out["model"] = model
        if stream:
            opts = out.get("stream_options")
            out["stream_options"] = {**opts, "include_usage": True} if isinstance(opts, dict) else {
                "include_usage": True}
        return out

    def chat_url(self, model: str) -> str:
        return self.base_url() + "/chat/completions"

    def embeddings_url(self, model: str) -> str:
        return self.base_url() + "/embeddings"

    def chat_request(self, body: JSON, model: str, stream: bool) -> UpstreamRequest:
        return UpstreamRequest("POST", self.chat_url(model), self.headers(),
                               orjson.dumps(self.prepare_body(body, model, stream)))

    def chat_response(self, data: bytes, model: str) -> Completion:
        d = orjson.loads(data)
        if not isinstance(d, dict) or "choices" not in d:
            raise ValueError("no `choices` in the upstream response")
        choices = d.get("choices") or [{}]
        return Completion(body=data, usage=Usage.from_openai(d.get("usage")), model=d.get("model") or model,
                          finish_reason=choices[0].get("finish_reason"), data=d)

    def stream_translator(self, body: JSON, model: str) -> StreamTranslator:
        return OpenAIStream(body, model)

    def embeddings_request(self, body: JSON, model: str) -> UpstreamRequest:
        return UpstreamRequest("POST", self.embeddings_url(model), self.headers(),
                               orjson.dumps({**body, "model": model}))

    def embeddings_response(self, data: bytes, model: str) -> Completion:
        d = orjson.loads(data)
        if not isinstance(d, dict) or "data" not in d:
            raise ValueError("no `data` in the upstream embeddings response")
        return Completion(body=data, usage=Usage.from_openai(d.get("usage")), model=d.get("model") or model,
                          data=d)

    def probe_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", self.base_url() + "/models", self.headers())

    def error(self, status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
        return openai_error(status, headers, data)
