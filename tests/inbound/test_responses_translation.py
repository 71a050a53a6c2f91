"""The Responses API inbound's pure translation: request -> chat completions body (golden fixture
tests/fixtures/inbound_responses/), chat completion -> Response, chunk payloads -> the typed `response.*` events
(each validated against the vendored OpenAI spec and the `openai` SDK's own `Response` type)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from openai.types.responses import Response

from proxy.core.errors import GatewayError, UpstreamError
from proxy.core.usage import Usage
from proxy.inbound.responses import response as response_mod
from proxy.inbound.responses import stream as stream_mod
from proxy.inbound.responses.request import to_chat
from proxy.inbound.responses.response import to_response
from proxy.inbound.responses.stream import ResponsesStream
from proxy.infra.sse import frames
from tests.http.test_responses_api import EventValidators
from tests.providers.goldens import golden


@pytest.fixture(autouse=True)
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = itertools.count(1)

    def new_id(prefix: str) -> str:
        return f"{prefix}{next(counter)}"

    monkeypatch.setattr(response_mod, "new_id", new_id)
    monkeypatch.setattr(stream_mod, "new_id", new_id)


@pytest.fixture(scope="module")
def events() -> EventValidators:
    return EventValidators()


def test_request_golden() -> None:
    g = golden("inbound_responses", "request_full.json")
    assert to_chat(g["responses_request"]) == g["chat_request"]


def test_string_input_and_defaults() -> None:
    assert to_chat({"model": "m", "input": "hi", "store": False, "stream": True}) == {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    # tool_choice without tools is dropped (chat completions rejects it); text format "text" is the default
    assert to_chat({"model": "m", "input": "hi", "tool_choice": "auto", "text": {"format": {"type": "text"}}}) == {
        "model": "m", "messages": [{"role": "user", "content": "hi"}]}


def base(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "input": "hi", **extra}


@pytest.mark.parametrize(("body", "param"), [
    ({"input": "hi"}, "model"),
    ({"model": "m"}, "input"),
    (base(input=7), "input"),
    (base(input=[{"role": "robot", "content": "x"}]), "input[0].role"),
    (base(input=[{"type": "file_search_call", "id": "x"}]), "input[0].type"),
    (base(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]), "input[0].call_id"),
    (base(input=[{"type": "function_call_output", "call_id": "c", "output": 3}]), "input[0].output"),
    (base(input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]),
     "input[0].content[0].image_url"),
    (base(input=[{"role": "user", "content": [{"type": "input_audio"}]}]), "input[0].content[0].type"),
    (base(input=[{"role": "system", "content": "only a system turn"}]), "input"),
    (base(max_output_tokens=0), "max_output_tokens"),
    (base(temperature=2.5), "temperature"),
    (base(top_p=True), "top_p"),
    (base(tools=[{"type": "web_search"}]), "tools[0].type"),
    (base(tools=[{"type": "function", "parameters": {}}]), "tools[0].name"),
    (base(tool_choice={"type": "mcp"}), "tool_choice"),
    (base(text={"format": {"type": "json_schema", "schema": {}}}), "text.format.name"),
    (base(text={"format": {"type": "yaml"}}), "text.format.type"),
    (base(metadata={"a": 1}), "metadata"),
    (base(store="yes"), "store"),
    (base(background=True), "background"),
    (base(frequency_penalty=1), "frequency_penalty"),
])
def test_bad_requests_name_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as e:
        to_chat(body)
    assert e.value.status == 400 and e.value.param == param and param in e.value.message


def test_response_with_text_and_function_call(events: EventValidators) -> None:
    completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-x",
                  "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                      "role": "assistant", "content": "Checking.", "tool_calls": [
                          {"id": "call_9", "type": "function",
                           "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}]}
    request = {"model": "smart", "input": "weather?", "instructions": "Be brief.", "metadata": {"t": "1"},
               "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}
    resp = to_response(completion, Usage(prompt_tokens=20, completion_tokens=7, cached_tokens=4), request, "resp_x")
    Response.model_validate(resp)
    assert resp["output"] == [
        {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
        {"id": "fc_2", "type": "function_call", "status": "completed", "call_id": "call_9", "name": "get_weather",
         "arguments": '{"city":"Paris"}'}]
    assert resp["usage"] == {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                             "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 27}
    assert (resp["id"], resp["model"], resp["created_at"], resp["status"], resp["incomplete_details"]) == (
        "resp_x", "gpt-x", 1700000000, "completed", None)
    assert (resp["instructions"], resp["metadata"], resp["store"]) == ("Be brief.", {"t": "1"}, True)
    assert resp["tools"] == [{"type": "function", "name": "get_weather", "description": None,
                              "parameters": {"type": "object"}, "strict": True}]


@pytest.mark.parametrize(("finish", "status", "reason"), [
    ("stop", "completed", None), ("length", "incomplete", "max_output_tokens"),
    ("content_filter", "incomplete", "content_filter")])
def test_status_from_finish_reason(finish: str, status: str, reason: str | None) -> None:
    completion = {"model": "m", "choices": [{"finish_reason": finish, "message": {"content": "x"}}]}
    resp = to_response(completion, Usage(1, 1), {"model": "m", "input": "x"}, "resp_1")
    assert resp["status"] == status
    assert resp["incomplete_details"] == (None if reason is None else {"reason": reason})


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def run(chunks: list[dict[str, Any]], reads: str, v: EventValidators) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    notes: dict[str, Any] = {}
    s = ResponsesStream({"model": "smart", "input": "x"}, "resp_s", "smart", notes)
    payloads = [orjson.dumps(c) for c in chunks]
    if reads == "event":
        out = b"".join(s.feed_frames(frames([p])) for p in payloads)
    else:
        out = s.feed_frames(frames(payloads))
    out += s.end(Usage(prompt_tokens=9, completion_tokens=5))
    evs = []
    for block in out.decode().split("\n\n")[:-1]:
        name, data = block.split("\n")
        ev = orjson.loads(data.removeprefix("data: "))
        assert ev["type"] == name.removeprefix("event: ")
        v.check(ev)
        evs.append(ev)
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    return evs, notes["response"]


@pytest.mark.parametrize("reads", ["event", "all"])
def test_stream_text_then_tool_call(reads: str, events: EventValidators) -> None:
    chunks = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
              chunk({"content": " \"you\""}),
              chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "get_weather", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
              chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
              chunk({}, "tool_calls")]
    evs, final = run(chunks, reads, events)
    assert [e["type"] for e in evs] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert [e["delta"] for e in evs if e["type"] == "response.output_text.delta"] == ["Hel", "lo", ' "you"']
    assert evs[7]["text"] == 'Hello "you"' and evs[4]["item_id"] == evs[2]["item"]["id"] == "msg_1"
    assert evs[13] == {"type": "response.function_call_arguments.done", "item_id": "fc_2", "name": "get_weather",
                       "output_index": 1, "arguments": '{"city":"Paris"}', "sequence_number": 13}
    assert evs[-1]["response"] == final
    Response.model_validate(final)
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["call_id"] == "call_1" and final["usage"]["output_tokens"] == 5


def test_stream_error_after_start(events: EventValidators) -> None:
    s = ResponsesStream({"model": "m", "input": "x"}, "resp_e", "m", {})
    s.feed(orjson.dumps(chunk({"content": "a"})))
    out = s.error(UpstreamError(502, "upstream broke", code="upstream_error", kind="server", retryable=False))
    evs = [orjson.loads(b.split(b"\ndata: ")[1]) for b in out.split(b"\n\n")[:-1]]
    for e in evs:
        events.check(e)
    assert [e["type"] for e in evs] == ["error", "response.failed"]
    assert evs[1]["response"]["status"] == "failed" and evs[1]["response"]["error"]["code"] == "server_error"


def test_stream_refusal_is_a_refusal_part(events: EventValidators) -> None:
    chunks = [chunk({"role": "assistant", "content": None, "refusal": ""}), chunk({"refusal": "I can't"}),
              chunk({"refusal": " help with that."}), chunk({}, "stop")]
    evs, final = run(chunks, "event", events)
    assert [e["type"] for e in evs] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.refusal.delta", "response.refusal.delta", "response.refusal.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert evs[3]["part"] == {"type": "refusal", "refusal": ""}
    assert evs[6]["refusal"] == "I can't help with that."
    assert final["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    Response.model_validate(final)
