"""Ollama: its OpenAI-compatible API under `/v1`, no key needed.

`base_url` is the Ollama root (default `http://127.0.0.1:11434`; a trailing `/v1` is tolerated).
The health probe asks the native `GET /api/tags`, which answers without loading a model.
An `api_key`, when set, is still sent as a Bearer token (for Ollama behind an authenticating proxy).
"""

from __future__ import annotations

from proxy.providers.base import UpstreamRequest
from proxy.providers.ollama.config import OllamaConfig
from proxy.providers.openai.translator import OpenAITranslator


class OllamaTranslator(OpenAITranslator):
    cfg: OllamaConfig  # type: ignore[assignment]
    default_base_url = "http://127.0.0.1:11434"

    def root_url(self) -> str:
        return (self.cfg.base_url or self.default_base_url).removesuffix("/v1")

    def base_url(self) -> str:
        return self.root_url() + "/v1"

    def probe_request(self) -> UpstreamRequest | None:
        return UpstreamRequest("GET", self.root_url() + "/api/tags", self.headers())
