"""The native relays (responses: native, Anthropic's Messages): the upstream's bytes leave unchanged however they
are cut into reads, and what metering needs (usage, the answering model, how it ended) is read from the few events
that carry it; an upstream error event is relayed and raised as delivered."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.core.errors import UpstreamError
from proxy.infra.sse import BlockSSEParser
from proxy.providers.anthropic.messages import MessagesRelay
from proxy.providers.base import NativeStream
from proxy.providers.openai.responses import ResponsesRelay
from proxy.providers.transport import stream_cut, translate_read


def sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(d) + b"\n\n" for name, d in events)


RESPONSE = {"id": "resp_1", "object": "response", "model": "gpt-x-2025", "status": "in_progress", "error": None,
            "output": []}
DONE = {**RESPONSE, "status": "completed",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi there"}]}],
        "usage": {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 3}}
RESPONSES = [("response.created", {"type": "response.created", "response": RESPONSE, "sequence_number": 0}),
             ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "say \"error\"",
                                             "sequence_number": 1}),
             ("response.output_text.delta", {"type": "response.output_text.delta", "delta": " there",
                                             "sequence_number": 2}),
             ("response.completed", {"type": "response.completed", "response": DONE, "sequence_number": 3})]
MESSAGES = [("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
                                                                    "usage": {"input_tokens": 9, "output_tokens": 1}}}),
            ("ping", {"type": "ping"}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "message_stop"}}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                               "usage": {"output_tokens": 5, "cache_read_input_tokens": 4}}),
            ("message_stop", {"type": "message_stop"})]


def cuts(data: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "events":
        return [e + b"\n\n" for e in data[:-2].split(b"\n\n")]
    return [data[i:i + 7] for i in range(0, len(data), 7)]  # reads that cut events anywhere


def relay(stream: NativeStream, data: bytes, how: str) -> tuple[bytes, Exception | None]:
    parser, out = BlockSSEParser(), []
    for read in cuts(data, how):
        sent, err = translate_read(read, parser, stream)
        out.append(sent)
        if err is not None:
            return b"".join(out), err
    stream.finish()
    return b"".join(out), None


@pytest.mark.parametrize("how", ["whole", "events", "bytes"])
def test_responses_relay(how: str) -> None:
    data = sse(RESPONSES)
    stream = ResponsesRelay({}, "asked")
    out, err = relay(stream, data, how)
    assert out == data and err is None
    assert stream.model == "gpt-x-2025" and stream.final == DONE and stream.finish_reason == "stop"
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens, stream.usage.cached_tokens) == (7, 3, 2)  # type: ignore[union-attr]
    assert stream.events == 4  # the next sequence_number, for an ending the gateway writes


@pytest.mark.parametrize("how", ["whole", "events", "bytes"])
def test_messages_relay(how: str) -> None:
    data = sse(MESSAGES)
    stream = MessagesRelay({}, "asked")
    out, err = relay(stream, data, how)
    assert out == data and err is None
    assert stream.model == "claude-x" and stream.finish_reason == "length"
    # Anthropic's input_tokens leave out cache reads; the prompt (OpenAI's terms) counts them
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens, stream.usage.cached_tokens) == (13, 5, 4)  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["whole", "bytes"])
def test_error_events_are_relayed_then_raised_as_delivered(how: str) -> None:
    failed = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    data = sse([*MESSAGES[:3], ("error", failed)])
    out, err = relay(MessagesRelay({}, "m"), data, how)
    assert out == data and isinstance(err, UpstreamError) and err.delivered and err.kind == "overloaded"
    data = sse([*RESPONSES[:2], ("response.failed", {"type": "response.failed", "sequence_number": 2, "response": {
        **RESPONSE, "status": "failed", "error": {"code": "server_error", "message": "boom"}}})])
    out, err = relay(ResponsesRelay({}, "m"), data, how)
    assert out == data and isinstance(err, UpstreamError) and err.delivered and "boom" in err.message


def test_a_stream_that_ends_early_is_cut_and_ended_in_the_wire_format() -> None:
    stream = ResponsesRelay({}, "m")
    relay_data = sse(RESPONSES[:2])
    parser = BlockSSEParser()
    translate_read(relay_data, parser, stream)
    with pytest.raises(UpstreamError):
        stream.finish()
    tail = stream.error_events(stream_cut("connection closed"))
    events = [orjson.loads(b.split(b"\ndata: ")[1]) for b in tail[:-2].split(b"\n\n")]
    assert [(e["type"], e["sequence_number"]) for e in events] == [("error", 2), ("response.failed", 3)]
    assert events[1]["response"]["id"] == "resp_1" and events[1]["response"]["status"] == "failed"
    messages = MessagesRelay({}, "m")
    with pytest.raises(UpstreamError):
        messages.finish()
    assert orjson.loads(messages.error_events(stream_cut("x")).split(b"data: ")[1])["error"]["type"] == "api_error"
