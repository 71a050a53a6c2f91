"""The mock upstream's OpenAI Responses API (/v1/responses) is faithful and strict: the official `openai`
SDK parses what it sends (stream and not), and it rejects what the real API rejects, in its words."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseFunctionToolCall, ResponseOutputMessage

from mockupstream.openai_responses_checks import sdk_schema
from tests.conftest import MockUpstream

KEY = "sk-upstream"
HEAD = {"Authorization": f"Bearer {KEY}"}
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the weather", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
CLOCK = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
# what the mock's Response carries: the SDK model's required fields and those the API always sends
RESPONSE_KEYS = {"id", "object", "created_at", "status", "error", "incomplete_details", "instructions",
                 "max_output_tokens", "model", "output", "parallel_tool_calls", "temperature", "top_p",
                 "tool_choice", "tools", "text", "metadata", "store", "usage"}
TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", *["response.output_text.delta"] * 3, "response.output_text.done",
               "response.content_part.done", "response.output_item.done", "response.completed"]


def client(mock: MockUpstream, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key=key, max_retries=0)


async def raw_events(http: aiohttp.ClientSession, mock: MockUpstream, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The SSE events of a streamed create, checking the framing: `event:` names its data's type."""
    async with http.post(mock.url + "/v1/responses", json={**body, "stream": True}, headers=HEAD) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        raw = (await r.read()).decode()
    assert "[DONE]" not in raw and raw.endswith("\n\n")
    out = []
    for block in raw.strip().split("\n\n"):
        event, data = block.split("\n")
        payload = orjson.loads(data.removeprefix("data: "))
        assert event == f"event: {payload['type']}"
        out.append(payload)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


async def test_create_text_response_shape(mock_upstream: MockUpstream) -> None:
    raw = await client(mock_upstream).responses.with_raw_response.create(
        model="gpt-mock", input="hello there responses", instructions="Be brief.", metadata={"k": "v"})
    data = orjson.loads(raw.http_response.content)
    assert set(data) == RESPONSE_KEYS
    assert {k for k, f in Response.model_fields.items() if f.is_required()} <= set(data)
    r = Response.model_validate(data, strict=True)
    assert r.id.startswith("resp_") and r.object == "response" and r.model == "gpt-mock"
    assert (r.status, r.error, r.incomplete_details, r.instructions) == ("completed", None, None, "Be brief.")
    assert (r.tool_choice, r.tools, r.parallel_tool_calls, r.metadata) == ("auto", [], True, {"k": "v"})
    assert data["store"] is True and data["text"] == {"format": {"type": "text"}}
    msg = ResponseOutputMessage.model_validate(data["output"][0], strict=True)
    assert msg.id.startswith("msg_") and (msg.role, msg.status) == ("assistant", "completed")
    assert data["output"][0]["content"] == [{"type": "output_text", "text": "hello there responses",
                                            "annotations": [], "logprobs": []}]
    assert r.output_text == "hello there responses"
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (5, 3, 8)
    assert data["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert data["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    assert mock_upstream.state.requests[-1]["body"]["input"] == "hello there responses"
    assert mock_upstream.state.calls["/v1/responses"] == 1


async def test_input_items_echo_the_last_user_message(mock_upstream: MockUpstream) -> None:
    r = await client(mock_upstream).responses.create(model="m", store=False, input=[
        {"role": "developer", "content": "be nice"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first question"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "an answer", "annotations": []}]},
        {"role": "user", "content": [{"type": "input_text", "text": "second"},
                                     {"type": "input_image", "image_url": "https://example.com/a.png"}]}])
    assert r.output_text == "second" and r.store is False
    assert r.usage is not None and r.usage.input_tokens == 2 + 2 + 2 + 1


async def test_tools_call_then_answer(mock_upstream: MockUpstream) -> None:
    c = client(mock_upstream)
    first = await c.responses.create(model="m", input="what is the weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
    assert len(first.output) == 1
    call = first.output[0]
    assert isinstance(call, ResponseFunctionToolCall)
    assert (call.name, orjson.loads(call.arguments), call.status) == ("get_weather", {"city": "mock"}, "completed")
    assert call.id is not None and call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert first.tools[0].model_dump(include={"name", "strict", "description"}) == {
        "name": "get_weather", "strict": True, "description": "Get the weather"}
    assert first.usage is not None and first.usage.output_tokens > 0
    history: list[Any] = [{"role": "user", "content": "what is the weather in Paris?"},
                          call.model_dump(exclude_none=True),
                          {"type": "function_call_output", "call_id": call.call_id, "output": "sunny 21C"}]
    answer = await c.responses.create(model="m", input=history, tools=[WEATHER])  # type: ignore[list-item]
    assert answer.output_text == "the tool said sunny 21C" and answer.output[0].type == "message"
    forced = await c.responses.create(model="m", input="time?", tools=[WEATHER, CLOCK],  # type: ignore[list-item]
                                      tool_choice={"type": "function", "name": "get_time"})
    assert forced.output[0].type == "function_call" and forced.output[0].name == "get_time"
    assert forced.tool_choice.model_dump() == {"type": "function", "name": "get_time"}  # type: ignore[union-attr]
    assert forced.tools[1].strict is True  # type: ignore[union-attr]  # the API's default for function tools
    plain = await c.responses.create(model="m", input="no tools please", tools=[WEATHER], tool_choice="none")  # type: ignore[list-item]
    assert plain.output_text == "no tools please"


async def test_max_output_tokens_makes_an_incomplete_response(mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(reply="lorem", reply_tokens=20)
    r = await client(mock_upstream).responses.create(model="m", input="hi", max_output_tokens=16)
    assert (r.status, r.max_output_tokens) == ("incomplete", 16)
    assert r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens"
    assert len(r.output_text.split()) == 16 and r.usage is not None and r.usage.output_tokens == 16
    assert r.output[0].status == "incomplete"  # type: ignore[union-attr]
    whole = await client(mock_upstream).responses.create(model="m", input="hi", max_output_tokens=100)
    assert whole.status == "completed" and len(whole.output_text.split()) == 20


async def test_sdk_stream_events_in_order(mock_upstream: MockUpstream) -> None:
    async with client(mock_upstream).responses.stream(model="m", input="one two three", instructions="x") as s:
        evs = [e async for e in s]
        final = await s.get_final_response()
    assert [e.type for e in evs] == TEXT_EVENTS
    assert [e.sequence_number for e in evs] == list(range(len(TEXT_EVENTS)))
    assert "".join(e.delta for e in evs if e.type == "response.output_text.delta") == "one two three"
    created = evs[0].response  # type: ignore[union-attr]
    assert (created.status, created.output, created.usage) == ("in_progress", [], None)
    assert final.id == created.id and final.status == "completed" and final.output_text == "one two three"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (4, 3)


async def test_raw_stream_framing_text_tool_and_incomplete(mock_upstream: MockUpstream,
                                                          http: aiohttp.ClientSession) -> None:
    text = await raw_events(http, mock_upstream, {"model": "m", "input": "one two three"})
    assert [e["type"] for e in text] == TEXT_EVENTS
    deltas = [e for e in text if e["type"] == "response.output_text.delta"]
    item_id = text[2]["item"]["id"]
    assert all((d["item_id"], d["output_index"], d["content_index"], d["logprobs"]) == (item_id, 0, 0, []) for d in deltas)
    assert text[2]["item"]["status"] == "in_progress" and text[2]["item"]["content"] == []
    Response.model_validate(text[-1]["response"], strict=True)
    tool = await raw_events(http, mock_upstream, {"model": "m", "input": "weather?", "tools": [WEATHER]})
    kinds = [e["type"] for e in tool]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[3:] == ["response.function_call_arguments.delta"] * 2 + [
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    args = "".join(e["delta"] for e in tool if e["type"] == "response.function_call_arguments.delta")
    assert args == tool[-3]["arguments"] == tool[-2]["item"]["arguments"] == '{"city":"mock"}'
    assert tool[2]["item"]["arguments"] == "" and tool[-1]["response"]["output"][0]["name"] == "get_weather"
    mock_upstream.configure(reply="lorem", reply_tokens=30)
    cut = await raw_events(http, mock_upstream, {"model": "m", "input": "hi", "max_output_tokens": 16})
    assert cut[-1]["type"] == "response.incomplete" and cut[-1]["response"]["status"] == "incomplete"
    assert sum(e["type"] == "response.output_text.delta" for e in cut) == 16


async def test_stream_error_marker_fails_the_response(mock_upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    evs = await raw_events(http, mock_upstream, {"model": "m", "input": "a b c [[stream_error:server]]"})
    assert [e["type"] for e in evs][-4:] == ["response.content_part.added", "response.output_text.delta",
                                             "error", "response.failed"]
    assert {k: evs[-2][k] for k in ("code", "param")} == {"code": "server_error", "param": None}
    failed = Response.model_validate(evs[-1]["response"])
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "server_error"
    stream = await client(mock_upstream).responses.create(model="m", input="x [[stream_error:server]]", stream=True)
    assert [e.type async for e in stream][-2:] == ["error", "response.failed"]


@pytest.mark.parametrize(("body", "param", "message"), [
    ([], None, "expected an object"),
    ({"input": "x"}, "model", "Missing required parameter: 'model'."),
    ({"model": "m"}, "input", "Missing required parameter: 'input'."),
    ({"model": "m", "input": []}, "input", "empty array"),
    ({"model": 3, "input": "x"}, "model", "Invalid type for 'model': expected a string, but got an integer instead."),
    ({"model": "m", "input": "x", "foo": 1}, "foo", "Unknown parameter: 'foo'."),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "input": "x"}, "messages",
     "Unknown parameter: 'messages'."),
    ({"model": "m", "input": "x", "stream": "yes"}, "stream", "expected a boolean"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature", "decimal above maximum value"),
    ({"model": "m", "input": "x", "max_output_tokens": 5}, "max_output_tokens", "Expected a value >= 16"),
    ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id",
     "Previous response with id 'resp_1' not found."),
    ({"model": "m", "input": [{"role": "tool", "content": "x"}]}, "input[0].role",
     "Invalid value: 'tool'. Supported values are: 'assistant', 'system', 'developer', and 'user'."),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
     "input[0].content[0].type", "Invalid value: 'text'."),
    ({"model": "m", "input": [{"role": "user", "content": "q"},
                              {"role": "assistant", "content": [{"type": "input_text", "text": "a"}]}]},
     "input[1].content[0].type", "Supported values are: 'output_text' and 'refusal'."),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text",
     "Missing required parameter"),
    ({"model": "m", "input": [{"role": "user", "content": "x", "name": "bob"}]}, "input[0].name",
     "Unknown parameter: 'input[0].name'."),
    ({"model": "m", "input": [{"role": "assistant", "content": None, "tool_calls": []}]}, "input[0].tool_calls",
     "Unknown parameter: 'input[0].tool_calls'."),
    ({"model": "m", "input": [{"type": "tool_result", "content": "x"}]}, "input[0].type", "Invalid value: 'tool_result'."),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "call_x", "output": "x"}]}, "input",
     "No tool call found for function call output with call_id call_x."),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                              {"role": "user", "content": "x"}]}, "input", "No tool output found for function call c1."),
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": {}}]},
     "input[0].arguments", "expected a string, but got an object"),
    ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input", "Item with id 'msg_1' not found."),
    ({"model": "m", "input": "x", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools[0].name",
     "Missing required parameter: 'tools[0].name'."),
    ({"model": "m", "input": "x", "tools": [{**CLOCK, "function": {}}]}, "tools[0].function",
     "Unknown parameter: 'tools[0].function'."),
    ({"model": "m", "input": "x", "tools": [CLOCK], "tool_choice": {"type": "function", "function": {"name": "f"}}},
     "tool_choice.name", "Missing required parameter: 'tool_choice.name'."),
    ({"model": "m", "input": "x", "tools": [CLOCK], "tool_choice": {"type": "function", "name": "nope"}},
     "tool_choice", "Tool choice 'nope' not found in 'tools' parameter."),
    ({"model": "m", "input": "x", "tool_choice": "any"}, "tool_choice", "Invalid value: 'any'."),
])
async def test_rejects_like_openai(mock_upstream: MockUpstream, http: aiohttp.ClientSession, body: Any,
                                  param: str | None, message: str) -> None:
    async with http.post(mock_upstream.url + "/v1/responses", json=body, headers=HEAD) as r:
        data = await r.json()
    assert r.status == 400, data
    assert message in data["error"]["message"] and data["error"]["param"] == param
    assert data["error"]["type"] == "invalid_request_error"


async def test_sdk_errors(mock_upstream: MockUpstream) -> None:
    with pytest.raises(openai.AuthenticationError):
        await client(mock_upstream, "wrong").responses.create(model="m", input="hi")
    with pytest.raises(openai.BadRequestError) as bad:
        await client(mock_upstream).responses.create(model="m", input="hi", extra_body={"messages": []})
    assert bad.value.param == "messages" and "Unknown parameter: 'messages'." in str(bad.value)
    with pytest.raises(openai.BadRequestError) as prev:
        await client(mock_upstream).responses.create(model="m", input="hi", previous_response_id="resp_abc")
    assert prev.value.code == "previous_response_not_found" and prev.value.param == "previous_response_id"
    mock_upstream.configure(context_window=3)
    with pytest.raises(openai.BadRequestError) as long:
        await client(mock_upstream).responses.create(model="m", input="a b", instructions="c d")
    assert long.value.code == "context_length_exceeded"


async def test_faults_and_cut_streams(mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(error_status=503)
    with pytest.raises(openai.APIStatusError) as failed:
        await client(mock_upstream).responses.create(model="m", input="hi")
    assert failed.value.status_code == 503 and failed.value.type == "server_error"
    with pytest.raises(openai.APIStatusError):
        await client(mock_upstream).responses.create(model="m", input="hi", stream=True)
    mock_upstream.configure(error_status=None, fault="content_filter")
    with pytest.raises(openai.BadRequestError) as filtered:
        await client(mock_upstream).responses.create(model="m", input="hi")
    assert filtered.value.code == "content_filter"
    mock_upstream.configure(fault=None, cut_after=4, reply="lorem", reply_tokens=10)
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async with client(mock_upstream).responses.stream(model="m", input="hi") as s:
            async for e in s:
                seen.append(e.type)
    assert seen == TEXT_EVENTS[:4]  # the connection died after 4 events, before any completion


def test_checks_read_the_sdk_typeddicts() -> None:
    schema = sdk_schema()
    assert schema is not None
    assert {"model", "input", "instructions", "tools", "stream", "previous_response_id"} <= schema["params"]
    assert "messages" not in schema["params"] and "max_tokens" not in schema["params"]
    assert {"message", "function_call", "function_call_output", "reasoning"} <= schema["items"].keys()
    assert {"role", "content", "type"} <= schema["items"]["message"] and "tool_calls" not in schema["items"]["message"]
    assert {"input_text", "output_text", "input_image", "refusal"} <= schema["parts"].keys()
