"""Gemini translator: golden requests/responses/streams (from Google's documented examples) and every
mapping rule of the OpenAI <-> generateContent translation, pure (no network)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from proxy.core.errors import UpstreamError
from proxy.infra.sse import SSEParser
from proxy.providers.gemini.config import GeminiConfig
from proxy.providers.gemini.schema import to_gemini_schema
from proxy.providers.gemini.translator import GeminiTranslator
from tests.providers.goldens import FIXTURES, golden, without

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def translator(**cfg: Any) -> GeminiTranslator:
    return GeminiTranslator("gem", GeminiConfig(**{"api_key": "AIza-test", **cfg}))


def request(body: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    return orjson.loads(translator().chat_request(body, "gemini-x", stream).body or b"")


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def names(kind: str) -> list[str]:
    return sorted(p.name for p in (FIXTURES / "gemini").glob(kind))


# ---------------------------------------------------------------- goldens
@pytest.mark.parametrize("name", names("request_*.json"))
def test_request_golden(name: str) -> None:
    g = golden("gemini", name)
    req = translator(api_key="k").chat_request(g["openai"], g["model"], g["stream"])
    assert (req.method, req.url, req.headers) == (g["expected"]["method"], g["expected"]["url"],
                                                  g["expected"]["headers"])
    assert orjson.loads(req.body or b"") == g["expected"]["body"]


@pytest.mark.parametrize("name", names("response_*.json"))
def test_response_golden(name: str) -> None:
    g = golden("gemini", name)
    c = translator().chat_response(orjson.dumps(g["upstream"]), g["model"])
    body = orjson.loads(c.body)
    assert without(body, "created") == g["expected"] and c.data == body
    assert (c.model, c.finish_reason) == (g["expected"]["model"], g["expected"]["choices"][0]["finish_reason"])
    u = g["expected_usage"]
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.cached_tokens) == (
        u["prompt_tokens"], u["completion_tokens"], u["cached_tokens"])


def feed(raw: bytes, include_usage: bool) -> tuple[Any, list[dict[str, Any]]]:
    st = translator().stream_translator({"stream": True, "stream_options": {"include_usage": include_usage}}, "asked")
    parser, out = SSEParser(), []
    for event, data in parser.feed(raw) + parser.close():
        out += [orjson.loads(c) for c in st.feed(event, data)]
    out += [orjson.loads(c) for c in st.finish()]
    return st, out


@pytest.mark.parametrize("name", names("stream_*.sse"))
@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_golden(name: str, include_usage: bool) -> None:
    g = golden("gemini", name.replace(".sse", ".expected.json"))
    raw = (FIXTURES / "gemini" / name).read_bytes()
    assert b"\r\n\r\n" in raw  # Google frames events with CRLF
    st, chunks = feed(raw, include_usage)
    want = g["chunks"] if include_usage else [c for c in g["chunks"] if c["choices"]]
    assert [without(c, "created") for c in chunks] == want
    assert (st.usage.prompt_tokens, st.usage.completion_tokens, st.usage.cached_tokens) == (
        g["usage"]["prompt_tokens"], g["usage"]["completion_tokens"], g["usage"]["cached_tokens"])
    assert (st.finish_reason, st.model) == (g["finish_reason"], g["model"])


@pytest.mark.parametrize("case", golden("gemini", "errors.json"), ids=lambda c: f'{c["status"]}-{c["expect"]["kind"]}')
def test_error_mapping(case: dict[str, Any]) -> None:
    err = translator().error(case["status"], case["headers"], orjson.dumps(case["body"]))
    want = case["expect"]
    assert (err.status, err.kind, err.code, err.retryable) == (want["status"], want["kind"], want["code"],
                                                                want["retryable"])
    if "message" in want:
        assert err.message == want["message"]
    if "retry_after" in want:
        assert err.retry_after == want["retry_after"]


# ---------------------------------------------------------------- request mapping
def test_urls_headers_and_probe() -> None:
    t = translator(base_url="https://gw.example/v1beta", headers={"x-goog-user-project": "p"})
    req = t.chat_request({"messages": [user("hi")]}, "models/gemini-2.5-flash", True)
    assert req.url == "https://gw.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert req.headers == {"Content-Type": "application/json", "x-goog-api-key": "AIza-test", "x-goog-user-project": "p"}
    probe = translator().probe_request()
    assert probe is not None and (probe.method, probe.url) == ("GET", "https://generativelanguage.googleapis.com/v1beta/models")
    assert probe.headers["x-goog-api-key"] == "AIza-test"


def test_generation_config() -> None:
    out = request({"messages": [user("x")], "max_completion_tokens": 9, "max_tokens": 5, "stop": "END", "n": 1,
                   "response_format": {"type": "json_object"}, "logit_bias": {"1": 2}, "user": "u"})
    assert out["generationConfig"] == {"maxOutputTokens": 9, "stopSequences": ["END"],
                                       "responseMimeType": "application/json"}
    assert set(out) == {"contents", "generationConfig"}
    assert "generationConfig" not in request({"messages": [user("x")], "response_format": {"type": "text"}})


def test_system_roles_and_merge() -> None:
    out = request({"messages": [{"role": "developer", "content": "A"}, user("a"), user([{"type": "text", "text": "b"}]),
                                {"role": "system", "content": [{"type": "text", "text": "B"}]},
                                {"role": "assistant", "content": "c"}, {"role": "assistant", "content": None}]})
    assert out["systemInstruction"] == {"parts": [{"text": "A"}, {"text": "B"}]}
    assert out["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                               {"role": "model", "parts": [{"text": "c"}]}]


@pytest.mark.parametrize(("choice", "want"), [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
])
def test_tool_choice(choice: Any, want: dict[str, Any]) -> None:
    out = request({"messages": [user("x")], "tools": [TOOL], "tool_choice": choice})
    assert out["toolConfig"] == {"functionCallingConfig": want}
    assert out["tools"] == [{"functionDeclarations": [{"name": "get_weather", "parameters": {
        "type": "OBJECT", "properties": {"location": {"type": "STRING"}}, "required": ["location"]}}]}]
    with pytest.raises(UpstreamError):
        request({"messages": [user("x")], "tools": [TOOL], "tool_choice": "sometimes"})
    with pytest.raises(UpstreamError):
        request({"messages": [user("x")], "tools": [{"type": "code_interpreter"}]})


def test_tool_results_use_the_calls_name_and_wrap_non_objects() -> None:
    out = request({"tools": [TOOL], "messages": [
        user("weather?"),
        {"role": "assistant", "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}},
            {"id": "call_1__thought__c2ln", "type": "function", "function": {"name": "get_time", "arguments": {}}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 21, "unit": "C"}'},
        {"role": "tool", "tool_call_id": "call_1__thought__c2ln", "content": [{"type": "text", "text": "12:00"}]}]})
    assert out["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
        {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "c2ln"}]}  # the signature rides back
    assert out["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21, "unit": "C"}}},
        {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}}]}


@pytest.mark.parametrize("messages", [
    [user("x"), {"role": "tool", "tool_call_id": "nope", "content": "r"}],
    [user("x"), {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "[1]"}}]}],
    [user("x"), {"role": "assistant", "tool_calls": [{"id": "a", "function": {}}]}],
    [{"role": "function", "name": "f", "content": "x"}],
    [user([{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}])],
    [user([{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}])],
    [user([{"type": "video", "video": {}}])],
])
def test_client_errors(messages: list[Any]) -> None:
    with pytest.raises(UpstreamError) as e:
        request({"messages": messages})
    assert (e.value.status, e.value.kind) == (400, "bad_request")


def test_media_parts() -> None:
    out = request({"messages": [user([
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        {"type": "image_url", "image_url": "https://example.com/a/photo.png?size=large"},
        {"type": "image_url", "image_url": {"url": "https://example.com/render"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "mp3"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}])]})
    assert out["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a/photo.png?size=large"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render"}},
        {"inlineData": {"mimeType": "audio/mp3", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}]


def test_schema_conversion() -> None:
    assert to_gemini_schema({"type": "object", "properties": {
        "a": {"type": ["string", "null"], "format": "date-time", "examples": ["x"]},
        "b": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        "c": {"const": "fixed"}, "d": {"type": "integer", "enum": [1, 2]},
        "e": {"$ref": "#/definitions/E"}, "f": {"type": "null"}},
        "definitions": {"E": {"type": "boolean", "description": "flag"}}}) == {
        "type": "OBJECT", "properties": {
            "a": {"type": "STRING", "format": "date-time", "nullable": True},
            "b": {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]},
            "c": {"type": "STRING", "enum": ["fixed"]}, "d": {"type": "INTEGER"},
            "e": {"type": "BOOLEAN", "description": "flag"}, "f": {"nullable": True}}}
    loop = {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}}, "$ref": "#/$defs/N"}
    assert to_gemini_schema(loop)["type"] == "OBJECT"  # recursion is cut off, not infinite
    assert to_gemini_schema(None) == {"type": "OBJECT", "properties": {}}


# ---------------------------------------------------------------- responses
def test_blocked_prompt_is_a_content_filter_error() -> None:
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 5}}
    for call in (lambda: translator().chat_response(orjson.dumps(blocked), "m"),
                 lambda: translator().stream_translator({}, "m").feed(None, orjson.dumps(blocked))):
        with pytest.raises(UpstreamError) as e:
            call()
        assert (e.value.status, e.value.kind, e.value.code, e.value.retryable) == (400, "content_filter",
                                                                                    "content_filter", False)
        assert "PROHIBITED_CONTENT" in e.value.message
    with pytest.raises(ValueError):
        translator().chat_response(b'{"usageMetadata": {}}', "m")


@pytest.mark.parametrize(("reason", "finish"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop"), (None, "stop")])
def test_finish_reasons(reason: str | None, finish: str) -> None:
    cand: dict[str, Any] = {"content": {"parts": [{"text": "x"}], "role": "model"}}
    if reason:
        cand["finishReason"] = reason
    assert translator().chat_response(orjson.dumps({"candidates": [cand]}), "asked").finish_reason == finish


def test_response_without_ids_model_or_usage() -> None:
    c = translator().chat_response(orjson.dumps({"candidates": [{"content": {"parts": [{"text": "hi"}]}}]}), "asked")
    body = orjson.loads(c.body)
    assert c.model == "asked" == body["model"] and body["id"].startswith("chatcmpl-")
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_stream_edge_cases() -> None:
    st = translator().stream_translator({"stream": True}, "asked")
    with pytest.raises(UpstreamError) as e:
        st.finish()  # nothing arrived: the stream broke
    assert e.value.kind == "stream_cut"
    with pytest.raises(UpstreamError) as e:
        st.feed(None, orjson.dumps({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}))
    assert (e.value.status, e.value.kind, e.value.retryable) == (503, "overloaded", True)
    # two candidates interleaved, the second ends first; tool_calls indexes count per choice
    st = translator().stream_translator({"stream": True, "n": 2}, "asked")
    fc = {"functionCall": {"name": "f", "args": {}}}
    out = [orjson.loads(c) for c in st.feed(None, orjson.dumps({"candidates": [
        {"index": 0, "content": {"parts": [fc]}}, {"index": 1, "content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}]}))]
    out += [orjson.loads(c) for c in st.feed(None, orjson.dumps({"candidates": [
        {"index": 0, "content": {"parts": [fc]}, "finishReason": "STOP"}]}))]
    assert [(c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in out] == [
        (0, {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, None),
        (1, {"role": "assistant", "content": "b"}, None), (1, {}, "stop"),
        (0, {"tool_calls": [{"index": 1, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, None),
        (0, {}, "tool_calls")]
    assert st.finish_reason == "tool_calls" and st.finish() == [] and st.usage is None


# ---------------------------------------------------------------- embeddings
def test_embeddings_single_and_batch() -> None:
    t = translator()
    one = t.embeddings_request({"input": "hello", "dimensions": 4}, "text-embedding-004")
    assert one.url == "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:embedContent"
    assert orjson.loads(one.body or b"") == {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]},
                                             "outputDimensionality": 4}
    batch = t.embeddings_request({"input": ["a", "b c"]}, "gemini-embedding-001")
    assert batch.url.endswith("/models/gemini-embedding-001:batchEmbedContents")
    assert orjson.loads(batch.body or b"") == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b c"}]}}]}
    for bad in ([1, 2, 3], [], None, [[1, 2]]):
        with pytest.raises(UpstreamError):
            t.embeddings_request({"input": bad}, "m")


def test_embeddings_responses() -> None:
    t = translator()
    c = t.embeddings_response_for({"input": "hello world!"}, b'{"embedding": {"values": [0.5, -1.0]}}', "e")
    assert orjson.loads(c.body) == {"object": "list", "model": "e",
                                    "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
                                    "usage": {"prompt_tokens": 3, "total_tokens": 3}}  # estimated: 12 chars / 4
    assert c.usage.prompt_tokens == 3
    data = b'{"embeddings": [{"values": [1.0]}, {"values": [0.25]}], "usageMetadata": {"promptTokenCount": 7}}'
    c = t.embeddings_response_for({"input": ["a", "b"], "encoding_format": "base64"}, data, "e")
    body = orjson.loads(c.body)
    assert [struct.unpack("<f", base64.b64decode(d["embedding"]))[0] for d in body["data"]] == [1.0, 0.25]
    assert body["usage"]["prompt_tokens"] == 7 == c.usage.prompt_tokens
    with pytest.raises(ValueError):
        t.embeddings_response(b"{}", "e")
