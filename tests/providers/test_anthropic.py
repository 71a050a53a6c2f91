"""Anthropic translator: golden requests/responses/streams (from Anthropic's documented examples) and
every mapping rule of the OpenAI <-> Messages translation, pure (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.core.errors import UpstreamError
from proxy.infra.sse import SSEParser
from proxy.providers.anthropic.config import AnthropicConfig
from proxy.providers.anthropic.translator import AnthropicTranslator
from tests.providers.goldens import FIXTURES, golden, without

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def translator(**cfg: Any) -> AnthropicTranslator:
    return AnthropicTranslator("claude", AnthropicConfig(**{"api_key": "sk-ant", **cfg}))


def request(body: dict[str, Any], stream: bool = False, **cfg: Any) -> dict[str, Any]:
    req = translator(**cfg).chat_request(body, "claude-x", stream)
    return orjson.loads(req.body or b"")


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def names(kind: str) -> list[str]:
    return sorted(p.name for p in (FIXTURES / "anthropic").glob(kind))


# ---------------------------------------------------------------- goldens
@pytest.mark.parametrize("name", names("request_*.json"))
def test_request_golden(name: str) -> None:
    g = golden("anthropic", name)
    req = translator(default_max_tokens=2048, api_key="k").chat_request(g["openai"], g["model"], g["stream"])
    assert (req.method, req.url, req.headers) == (g["expected"]["method"], g["expected"]["url"],
                                                  g["expected"]["headers"])
    assert orjson.loads(req.body or b"") == g["expected"]["body"]


@pytest.mark.parametrize("name", names("response_*.json"))
def test_response_golden(name: str) -> None:
    g = golden("anthropic", name)
    c = translator().chat_response(orjson.dumps(g["upstream"]), g["model"])
    body = orjson.loads(c.body)
    assert without(body, "created") == g["expected"] and isinstance(body["created"], int)
    assert c.data == body and c.model == g["expected"]["model"]
    assert c.finish_reason == g["expected"]["choices"][0]["finish_reason"]
    u = g["expected_usage"]
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.cached_tokens, c.usage.cache_write_tokens) == (
        u["prompt_tokens"], u["completion_tokens"], u["cached_tokens"], u["cache_write_tokens"])


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
    g = golden("anthropic", name.replace(".sse", ".expected.json"))
    st, chunks = feed((FIXTURES / "anthropic" / name).read_bytes(), include_usage)
    want = g["chunks"] if include_usage else [c for c in g["chunks"] if c["choices"]]
    assert [without(c, "created") for c in chunks] == want
    assert len({c["created"] for c in chunks}) == 1
    assert (st.usage.prompt_tokens, st.usage.completion_tokens, st.usage.cached_tokens) == (
        g["usage"]["prompt_tokens"], g["usage"]["completion_tokens"], g["usage"]["cached_tokens"])
    assert (st.finish_reason, st.model) == (g["finish_reason"], g["model"])


@pytest.mark.parametrize("case", golden("anthropic", "errors.json"), ids=lambda c: f'{c["status"]}-{c["expect"]["kind"]}')
def test_error_mapping(case: dict[str, Any]) -> None:
    data = case["body"].encode() if isinstance(case["body"], str) else orjson.dumps(case["body"])
    err = translator().error(case["status"], case["headers"], data)
    want = case["expect"]
    assert (err.status, err.kind, err.code, err.retryable) == (want["status"], want["kind"], want["code"],
                                                                want["retryable"])
    assert err.upstream_status == case["status"]
    if "message" in want:
        assert err.message == want["message"]
    if "retry_after" in want:
        assert err.retry_after == want["retry_after"] and err.headers["Retry-After"] == str(want["retry_after"])


# ---------------------------------------------------------------- request mapping
def test_headers_url_and_probe() -> None:
    t = translator(base_url="https://proxy.example/v1", version="2024-01-01", headers={"anthropic-beta": "x"})
    req = t.chat_request({"messages": [user("hi")]}, "m", False)
    assert req.url == "https://proxy.example/v1/messages"
    assert req.headers == {"content-type": "application/json", "anthropic-version": "2024-01-01",
                           "x-api-key": "sk-ant", "anthropic-beta": "x"}
    probe = t.probe_request()
    assert probe is not None and (probe.method, probe.url) == ("GET", "https://proxy.example/v1/models")
    assert probe.headers["x-api-key"] == "sk-ant"
    assert "x-api-key" not in translator(api_key=None).headers()


def test_max_tokens_precedence() -> None:
    assert request({"messages": [user("x")]}, default_max_tokens=77)["max_tokens"] == 77
    assert request({"messages": [user("x")], "max_tokens": 5})["max_tokens"] == 5
    assert request({"messages": [user("x")], "max_tokens": 5, "max_completion_tokens": 9})["max_tokens"] == 9


def test_sampling_stop_user_and_dropped_fields() -> None:
    out = request({"messages": [user("x")], "stop": "END", "temperature": 0.2, "top_p": 0.5, "user": "u1",
                   "seed": 3, "presence_penalty": 1, "logprobs": True, "response_format": {"type": "json_object"},
                   "stream_options": {"include_usage": True}})
    assert out["stop_sequences"] == ["END"] and out["temperature"] == 0.2 and out["top_p"] == 0.5
    assert out["metadata"] == {"user_id": "u1"}
    assert set(out) == {"model", "max_tokens", "messages", "stop_sequences", "temperature", "top_p", "metadata"}
    assert request({"messages": [user("x")], "temperature": 2})["temperature"] == 1.0
    assert request({"messages": [user("x")], "stop": ["\n", "END"]})["stop_sequences"] == ["END"]
    assert "stop_sequences" not in request({"messages": [user("x")], "stop": "\n\n"})
    assert "top_p" not in request({"messages": [user("x")], "top_p": 1})
    assert request({"messages": [user("x")]}, stream=True)["stream"] is True


def test_n_above_one_is_rejected() -> None:
    with pytest.raises(UpstreamError) as e:
        request({"messages": [user("x")], "n": 2})
    assert (e.value.status, e.value.kind, e.value.param) == (400, "bad_request", "n")


def test_system_and_developer_become_system() -> None:
    out = request({"messages": [{"role": "system", "content": "A"}, user("x"), {"role": "developer", "content": "B"}]})
    assert out["system"] == "A\n\nB" and out["messages"] == [user("x")]
    cached = request({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}]},
        user([{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}])]})
    assert cached["system"] == [{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}]
    assert cached["messages"][0]["content"] == [{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}]
    with pytest.raises(UpstreamError):
        request({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})


def test_same_role_messages_are_merged() -> None:
    out = request({"messages": [user("a"), user([{"type": "text", "text": "b"}]), {"role": "assistant", "content": "c"},
                                {"role": "assistant", "content": [{"type": "text", "text": "d"}]}, user("e")]})
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
        user("e")]


def test_empty_messages_are_skipped_and_prefill_stripped() -> None:
    out = request({"messages": [user("a"), {"role": "assistant", "content": ""}, user("b"),
                                {"role": "assistant", "content": "The answer is "}]})
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                               {"role": "assistant", "content": "The answer is"}]


def test_tool_calls_and_results() -> None:
    out = request({"tools": [TOOL], "messages": [
        user("weather?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        user("also, quickly"),  # text before the result: tool results must still open the turn
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}]})
    assert out["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}]}
    assert out["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
        {"type": "text", "text": "also, quickly"}]}
    assert out["tools"] == [{"name": "get_weather", "input_schema": TOOL["function"]["parameters"]}]
    assert "tool_choice" not in out


@pytest.mark.parametrize(("choice", "parallel", "want"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
    (None, None, None),
])
def test_tool_choice(choice: Any, parallel: Any, want: Any) -> None:
    body: dict[str, Any] = {"messages": [user("x")], "tools": [TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert request(body).get("tool_choice") == want


def test_tool_choice_without_tools_and_bad_tools() -> None:
    assert "tool_choice" not in request({"messages": [user("x")], "tool_choice": "required"})
    no_params = request({"messages": [user("x")], "tools": [{"type": "function", "function": {"name": "now"}}]})
    assert no_params["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]
    for bad in ({"tools": [{"type": "web_search"}]}, {"tools": [TOOL], "tool_choice": "sometimes"}):
        with pytest.raises(UpstreamError) as e:
            request({"messages": [user("x")], **bad})
        assert e.value.status == 400


@pytest.mark.parametrize("args", ["{not json", "[1, 2]"])
def test_bad_tool_arguments(args: str) -> None:
    with pytest.raises(UpstreamError) as e:
        request({"messages": [user("x"), {"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": args}}]}]})
    assert e.value.status == 400 and "arguments" in e.value.message


def test_images_and_documents() -> None:
    out = request({"messages": [user([
        {"type": "image_url", "image_url": {"url": f"data:image/PNG;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}])]})
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}]


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
    {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
    {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}},
    {"type": "image_url", "image_url": {}},
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    {"type": "file", "file": {"file_id": "file-123"}},
])
def test_unsupported_parts_are_client_errors(part: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError) as e:
        request({"messages": [user([part])]})
    assert (e.value.status, e.value.kind, e.value.retryable) == (400, "bad_request", False)


@pytest.mark.parametrize("message", [{"role": "function", "name": "f", "content": "x"},
                                     {"role": "tool", "content": "no id"}, "not a message"])
def test_bad_messages(message: Any) -> None:
    with pytest.raises(UpstreamError):
        request({"messages": [user("x"), message]})


def test_embeddings_not_offered() -> None:
    with pytest.raises(UpstreamError) as e:
        translator().embeddings_request({"input": "x"}, "m")
    assert e.value.code == "embeddings_not_supported"


# ---------------------------------------------------------------- response mapping
def message(**kw: Any) -> bytes:
    base = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3", "content": [],
            "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}
    return orjson.dumps({**base, **kw})


@pytest.mark.parametrize(("stop", "finish"), [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                                              ("tool_use", "tool_calls"), ("refusal", "content_filter"),
                                              ("pause_turn", "stop"), ("model_context_window_exceeded", "length"),
                                              (None, "stop")])
def test_finish_reasons(stop: str | None, finish: str) -> None:
    c = translator().chat_response(message(stop_reason=stop, content=[{"type": "text", "text": "x"}]), "m")
    assert c.finish_reason == finish == orjson.loads(c.body)["choices"][0]["finish_reason"]


def test_response_ignores_thinking_and_needs_content() -> None:
    c = translator().chat_response(message(content=[{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                                    {"type": "text", "text": "done"}]), "m")
    assert orjson.loads(c.body)["choices"][0]["message"]["content"] == "done"
    with pytest.raises(ValueError):
        translator().chat_response(orjson.dumps({"type": "message"}), "m")


# ---------------------------------------------------------------- stream edge cases
def events(*evs: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(f"event: {n}\ndata: {orjson.dumps(d).decode()}\n\n".encode() for n, d in evs)


START = ("message_start", {"type": "message_start", "message": {
    "id": "msg_s", "type": "message", "role": "assistant", "model": "claude-s", "content": [], "stop_reason": None,
    "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2}}})


@pytest.mark.parametrize(("etype", "status", "kind"), [("overloaded_error", 503, "overloaded"),
                                                       ("api_error", 502, "server"),
                                                       ("rate_limit_error", 429, "rate_limit")])
def test_stream_error_event(etype: str, status: int, kind: str) -> None:
    raw = events(START, ("error", {"type": "error", "error": {"type": etype, "message": "Overloaded"}}))
    with pytest.raises(UpstreamError) as e:
        feed(raw, False)
    assert (e.value.status, e.value.kind, e.value.retryable) == (status, kind, True)


def test_stream_cut_before_message_stop() -> None:
    with pytest.raises(UpstreamError) as e:
        feed(events(START, ("content_block_start", {"type": "content_block_start", "index": 0,
                                                    "content_block": {"type": "text", "text": ""}})), False)
    assert (e.value.kind, e.value.retryable) == ("stream_cut", True)


def test_stream_usage_thinking_and_unnamed_events() -> None:
    st = translator().stream_translator({"stream": True}, "asked")
    assert st.feed(None, orjson.dumps(START[1])) and st.usage is not None and st.usage.prompt_tokens == 16
    assert st.feed(None, orjson.dumps({"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "thinking", "thinking": ""}})) == []
    assert st.feed(None, orjson.dumps({"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "thinking_delta", "thinking": "hmm"}})) == []
    assert st.feed("ping", b'{"type": "ping"}') == [] and st.feed("future_event", b"{}") == []
    st.feed(None, orjson.dumps({"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                                "usage": {"output_tokens": 7, "input_tokens": None}}))
    assert st.feed(None, b'{"type": "message_stop"}') == []  # include_usage off: no usage chunk...
    assert st.finish() == []
    u = st.usage
    assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens) == (16, 7, 4, 2)  # ...but usage
    assert (st.finish_reason, st.model) == ("length", "claude-s")


def test_fixture_files_exist() -> None:
    assert len(names("request_*.json")) >= 2 and len(names("stream_*.sse")) >= 2
    assert Path(FIXTURES / "anthropic" / "errors.json").exists()
