"""Ollama translator: OpenAI-compatible under /v1, keyless, native health probe."""

from __future__ import annotations

import orjson

from proxy.providers.ollama.config import OllamaConfig
from proxy.providers.ollama.translator import OllamaTranslator


def test_defaults() -> None:
    tr = OllamaTranslator("ol", OllamaConfig())
    req = tr.chat_request({"messages": [], "model": "alias"}, "llama3.2", stream=True)
    assert req.url == "http://127.0.0.1:11434/v1/chat/completions"
    assert "Authorization" not in req.headers
    body = orjson.loads(req.body or b"")
    assert body["model"] == "llama3.2" and body["stream_options"] == {"include_usage": True}
    assert tr.embeddings_request({"input": "x"}, "nomic").url == "http://127.0.0.1:11434/v1/embeddings"
    probe = tr.probe_request()
    assert probe is not None and (probe.method, probe.url) == ("GET", "http://127.0.0.1:11434/api/tags")


def test_base_url_with_v1_and_key() -> None:
    tr = OllamaTranslator("ol", OllamaConfig(base_url="http://gpu:11434/v1/", api_key="t"))
    assert tr.chat_request({"messages": []}, "m", stream=False).url == "http://gpu:11434/v1/chat/completions"
    probe = tr.probe_request()
    assert probe is not None and probe.url == "http://gpu:11434/api/tags"
    assert probe.headers["Authorization"] == "Bearer t"


def test_not_found_error() -> None:
    tr = OllamaTranslator("ol", OllamaConfig())
    err = tr.error(404, {}, b'{"error":{"message":"model \\"x\\" not found, try pulling it first",'
                            b'"type":"api_error","param":null,"code":null}}')
    assert err.status == 404 and err.kind == "not_found" and "try pulling it first" in err.message
