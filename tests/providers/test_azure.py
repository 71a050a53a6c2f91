"""Azure OpenAI translator: deployment URLs, auth headers, errors, the annotation-only stream chunk."""

from __future__ import annotations

import orjson
import pytest

from proxy.providers.azure.config import AzureConfig
from proxy.providers.azure.translator import AzureTranslator
from tests.providers.goldens import golden

BASE = "https://res.openai.azure.com"


def translator(**cfg: object) -> AzureTranslator:
    return AzureTranslator("az", AzureConfig(**{"base_url": BASE, "api_key": "k1", **cfg}))


def test_urls_and_key_header() -> None:
    tr = translator()
    req = tr.chat_request({"model": "alias", "messages": []}, "gpt-4o prod", stream=True)
    assert req.url == f"{BASE}/openai/deployments/gpt-4o%20prod/chat/completions?api-version=2024-10-21"
    assert req.headers["api-key"] == "k1" and "Authorization" not in req.headers
    body = orjson.loads(req.body or b"")
    assert body["model"] == "gpt-4o prod" and body["stream_options"] == {"include_usage": True}
    emb = tr.embeddings_request({"model": "alias", "input": "x"}, "emb")
    assert emb.url == f"{BASE}/openai/deployments/emb/embeddings?api-version=2024-10-21"
    probe = tr.probe_request()
    assert probe is not None and probe.method == "GET"
    assert probe.url == f"{BASE}/openai/models?api-version=2024-10-21"


def test_entra_token_and_api_version_and_base_with_openai_suffix() -> None:
    tr = translator(base_url=BASE + "/openai/", azure_ad_token="eyJ0", api_version="2025-01-01-preview")
    req = tr.chat_request({"messages": []}, "d", stream=False)
    assert req.url == f"{BASE}/openai/deployments/d/chat/completions?api-version=2025-01-01-preview"
    assert req.headers["Authorization"] == "Bearer eyJ0" and "api-key" not in req.headers


@pytest.mark.parametrize("case", golden("azure", "errors.json"), ids=lambda c: c["expect"]["kind"])
def test_error_mapping(case: dict) -> None:
    err = translator().error(case["status"], case["headers"], orjson.dumps(case["body"]))
    want = case["expect"]
    assert (err.status, err.kind, err.code, err.retryable) == (want["status"], want["kind"], want["code"],
                                                               want["retryable"])
    assert case["body"]["error"]["message"] in err.message
    if "retry_after" in want:
        assert err.retry_after == want["retry_after"] and err.headers["Retry-After"] == "6"


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream(include_usage: bool) -> None:
    g = golden("azure", "stream.json")
    body = {"messages": [], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    tr = translator().stream_translator(body, "deployment")
    raw = [orjson.dumps(c) for c in g["upstream"]]
    out = [c for r in raw for c in tr.feed(None, r)] + tr.feed(None, b"[DONE]")
    want = g["forwarded_with_usage"] if include_usage else g["forwarded_without_usage"]
    assert out == [raw[i] for i in want]  # forwarded byte for byte
    assert tr.model == g["model"] and tr.finish_reason == g["finish_reason"]
    assert tr.usage is not None and tr.usage.to_openai() == g["usage"]


def test_content_filter_finish_passes_through() -> None:
    data = {"id": "x", "object": "chat.completion", "model": "gpt-4o", "choices": [
        {"index": 0, "finish_reason": "content_filter", "message": {"role": "assistant", "content": None},
         "content_filter_results": {"violence": {"filtered": True, "severity": "high"}}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}}
    c = translator().chat_response(orjson.dumps(data), "d")
    assert c.finish_reason == "content_filter" and c.body == orjson.dumps(data)


def test_old_api_version_gets_no_stream_options() -> None:
    body = {"messages": [], "stream": True, "stream_options": {"include_usage": True}}
    old = translator(api_version="2024-06-01").chat_request(body, "d", stream=True)
    assert "stream_options" not in orjson.loads(old.body or b"")
    new = translator(api_version="2024-09-01-preview").chat_request(body, "d", stream=True)
    assert orjson.loads(new.body or b"")["stream_options"] == {"include_usage": True}
