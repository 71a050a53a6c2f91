"""Mistral translator: fields Mistral rejects are dropped or renamed, usage stripped from the last chunk."""

from __future__ import annotations

import re

import orjson
import pytest

from proxy.providers.mistral.config import MistralConfig
from proxy.providers.mistral.translator import MistralTranslator, mistral_tool_id
from tests.providers.goldens import golden


def translator(**cfg: object) -> MistralTranslator:
    return MistralTranslator("mi", MistralConfig(**{"api_key": "mk", **cfg}))


def test_request_golden() -> None:
    g = golden("mistral", "request.json")
    req = translator().chat_request(g["openai_request"], "mistral-small-latest", stream=True)
    assert req.url == "https://api.mistral.ai/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer mk"
    want = orjson.loads(orjson.dumps(g["mistral_request"]).replace(
        b"MISTRAL_ID", mistral_tool_id("call_abcdefghijklmnop").encode()))
    assert orjson.loads(req.body or b"") == want


def test_tool_ids() -> None:
    new = mistral_tool_id("call_abcdefghijklmnop")
    assert re.fullmatch(r"[A-Za-z0-9]{9}", new) and new == mistral_tool_id("call_abcdefghijklmnop")
    assert mistral_tool_id("Abc123xyz") == "Abc123xyz" and mistral_tool_id(None) is None


def test_explicit_max_tokens_and_random_seed_win() -> None:
    body = {"messages": [], "max_tokens": 5, "max_completion_tokens": 9, "seed": 1, "random_seed": 2}
    out = orjson.loads(translator().chat_request(body, "m", stream=False).body or b"")
    assert (out["max_tokens"], out["random_seed"]) == (5, 2) and "seed" not in out
    assert "max_completion_tokens" not in out and "stream_options" not in out


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_usage_on_last_chunk(include_usage: bool) -> None:
    g = golden("mistral", "stream.json")
    body = {"messages": [], "stream": True, "stream_options": {"include_usage": include_usage}}
    tr = translator().stream_translator(body, "m")
    raw = [orjson.dumps(c) for c in g["upstream"]]
    out = [c for r in raw for c in tr.feed(None, r)] + tr.feed(None, b"[DONE]")
    assert out[:2] == raw[:2]  # untouched chunks are forwarded byte for byte
    last = orjson.loads(out[2])
    assert last["choices"][0]["finish_reason"] == "stop"
    assert ("usage" in last) is include_usage
    assert tr.usage is not None and tr.usage.to_openai() == g["usage"] and tr.finish_reason == "stop"


@pytest.mark.parametrize("case", golden("mistral", "errors.json"), ids=lambda c: c["expect"]["kind"])
def test_error_mapping(case: dict) -> None:
    err = translator().error(case["status"], case["headers"], orjson.dumps(case["body"]))
    want = case["expect"]
    assert (err.status, err.kind, err.code, err.retryable) == (want["status"], want["kind"], want["code"],
                                                               want["retryable"])
    if "message" in want:
        assert want["message"] in err.message
