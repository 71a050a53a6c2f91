"""The Anthropic Messages inbound's pure translation, against golden fixtures (tests/fixtures/inbound_anthropic/):
request -> chat completions body, chat completion -> Message, chunk payloads -> stream events (validated against
the anthropic SDK's own types), errors -> Anthropic's shape and status."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from proxy.core.errors import GatewayError, UpstreamError
from proxy.core.usage import Usage
from proxy.inbound.anthropic.count import estimate_tokens
from proxy.inbound.anthropic.errors import error_body
from proxy.inbound.anthropic.request import to_chat
from proxy.inbound.anthropic.response import to_message
from proxy.inbound.anthropic.stream import AnthropicStream
from proxy.infra.sse import frames
from tests.providers.goldens import golden

EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def test_request_golden() -> None:
    g = golden("inbound_anthropic", "request_full.json")
    assert to_chat(g["messages_request"]) == g["chat_request"]


def base(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize(("body", "message"), [
    ({"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}, "model: Field required"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens: Field required"),
    (base(max_tokens=0), "max_tokens: Input should be an integer greater than or equal to 1"),
    (base(messages=[]), "messages: Input should be a non-empty list"),
    (base(messages=[{"role": "tool", "content": "x"}]), "messages.0.role: Input should be 'user' or 'assistant'"),
    (base(messages=[{"role": "user"}]), "messages.0.content: Field required"),
    (base(messages=[{"role": "user", "content": [{"type": "video"}]}]), "messages.0.content.0.type: Input tag"),
    (base(messages=[{"role": "user", "content": [{"type": "tool_result"}]}]), "messages.0.content.0.tool_use_id"),
    (base(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": []}]}]),
     "messages.0.content.0.input: Input should be a valid dictionary"),
    (base(tools=[{"name": "f"}]), "tools.0.input_schema: Field required"),
    (base(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools.0.type: tool type"),
    (base(tool_choice={"type": "sometimes"}), "tool_choice: Input should be"),
    (base(temperature=1.5), "temperature: Input should be a number from 0 to 1"),
    (base(stop_sequences="END"), "stop_sequences: Input should be a list of strings"),
    (base(metadata={"user_id": 3}), "metadata.user_id: Input should be a valid string"),
    (base(stream="yes"), "stream: Input should be a valid boolean"),
    (base(n=2), "n: Extra inputs are not permitted"),
    (base(system=[{"type": "image"}]), "system.0: Input should be a text block"),
])
def test_bad_requests_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(GatewayError) as e:
        to_chat(body)
    assert e.value.status == 400 and e.value.message.startswith(message)


def test_tool_choice_without_tools_and_ignored_fields() -> None:
    out = to_chat(base(tool_choice={"type": "any"}, top_k=3, thinking={"type": "enabled", "budget_tokens": 1024}))
    assert out == {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def test_response_golden_validates_as_a_message() -> None:
    g = golden("inbound_anthropic", "response_tool_use.json")
    message = to_message(g["chat_completion"], Usage(*g["usage"]))
    assert message == g["message"]
    Message.model_validate(message)


def test_response_edge_cases() -> None:
    chat = {"id": "msg_from_anthropic", "model": "claude", "choices": [
        {"finish_reason": "length", "message": {"content": None, "tool_calls": [
            {"id": "c", "function": {"name": "f", "arguments": "{\"cut"}}]}}]}
    m = to_message(chat, Usage(10, 5, 2, 3))
    assert m["id"] == "msg_from_anthropic" and m["stop_reason"] == "max_tokens"
    assert m["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]  # truncated arguments
    assert m["usage"] == {"input_tokens": 5, "output_tokens": 5, "cache_creation_input_tokens": 3,
                          "cache_read_input_tokens": 2}
    refused = to_message({"choices": [{"finish_reason": "content_filter", "message": {"refusal": "no"}}]}, None)
    assert refused["stop_reason"] == "refusal" and refused["content"] == [{"type": "text", "text": "no"}]
    Message.model_validate(refused)


def parse(out: bytes) -> list[list[Any]]:
    events = []
    for block in out.decode().split("\n\n")[:-1]:
        name, data = block.split("\n")
        events.append([name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))])
    return events


def test_stream_golden_validates_as_stream_events() -> None:
    g = golden("inbound_anthropic", "stream_text_tools.json")
    s = AnthropicStream("claude-x", g["input_tokens_estimate"])
    events = parse(b"".join(s.feed(orjson.dumps(c)) for c in g["chunks"]) + s.end(None))
    assert events == g["events"]
    for name, data in events:
        assert data["type"] == name
        if name != "ping":
            EVENTS.validate_python(data)


def test_stream_frames_fast_path_and_usage_agree() -> None:
    """Whole reads of framed chunks give the same bytes as one chunk at a time without the learned fast path."""
    g = golden("inbound_anthropic", "stream_text_tools.json")
    payloads = [orjson.dumps(c) for c in g["chunks"]] + [b"[DONE]"]
    one = AnthropicStream("claude-x", 40)
    one._learn = 0
    slow = b"".join(one.feed(p) for p in payloads[:-1]) + one.end(None)
    reads = AnthropicStream("claude-x", 40)
    fast = reads.feed_frames(frames(payloads[:3])) + reads.feed_frames(frames(payloads[3:])) + reads.end(None)
    assert fast == slow and reads._slot is not None
    # the pipeline's usage (prompt-cache writes included) wins over the usage chunk's
    final = AnthropicStream("m", 1)
    final.feed(payloads[-2])
    assert parse(final.end(Usage(50, 9, 0, 30)))[-2][1]["usage"]["cache_creation_input_tokens"] == 30


def test_stream_without_chunks_and_error_event() -> None:
    s = AnthropicStream("m", 7)
    events = parse(s.end(None))
    assert [n for n, _ in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[2][1]["usage"] == {"input_tokens": 7, "output_tokens": 0}
    err = parse(s.error(UpstreamError(503, "every provider is down", kind="overloaded", retryable=True)))
    assert err == [["error", {"type": "error", "error": {"type": "overloaded_error",
                                                         "message": "every provider is down"}}]]


@pytest.mark.parametrize(("status", "etype", "sent"), [
    (400, "invalid_request_error", 400), (401, "authentication_error", 401), (403, "permission_error", 403),
    (404, "not_found_error", 404), (405, "invalid_request_error", 405), (413, "request_too_large", 413),
    (429, "rate_limit_error", 429), (500, "api_error", 500), (502, "api_error", 502),
    (503, "overloaded_error", 529), (504, "timeout_error", 504)])
def test_error_shape_and_status(status: int, etype: str, sent: int) -> None:
    got_status, body = error_body(GatewayError(status, "why"))
    assert (got_status, orjson.loads(body)) == (sent, {"type": "error", "error": {"type": etype, "message": "why"}})


def test_count_estimate() -> None:
    small = estimate_tokens({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    tools = [{"name": "f", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}]
    more = estimate_tokens({"model": "m", "system": "x" * 400, "messages": [{"role": "user", "content": "hi"}],
                            "tools": tools})
    assert small == 4 and more > small + 100
    with pytest.raises(GatewayError, match="max_tokens: Extra inputs"):
        estimate_tokens({"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
