"""The mock's Anthropic POST /anthropic/v1/messages/count_tokens: the official SDK's count_tokens gets the
prompt tokens the messages endpoint reports (+5 a tool, so it cannot be mistaken for an estimate), and
the request is checked like a Messages request with count_tokens' own fields."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import pytest

from mockupstream.anthropic_checks import sdk_keys
from tests.conftest import MockUpstream

KEY = "sk-upstream"
WEATHER: Any = {"name": "get_weather", "description": "Get the weather", "input_schema": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}
CLOCK: Any = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
CONVERSATION: Any = [{"role": "user", "content": "hello there claude"},
                     {"role": "assistant", "content": [{"type": "text", "text": "hi, how can I help?"}]},
                     {"role": "user", "content": [{"type": "text", "text": "count these four words"}]}]


def claude(mock: MockUpstream, key: str = KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=mock.url + "/anthropic", api_key=key, max_retries=0)


async def test_count_equals_the_messages_usage(mock_upstream: MockUpstream) -> None:
    c = claude(mock_upstream)
    msg = await c.messages.create(model="claude-mock", max_tokens=100, system="Be brief.", messages=CONVERSATION)
    count = await c.messages.count_tokens(model="claude-mock", system="Be brief.", messages=CONVERSATION)
    assert isinstance(count, anthropic.types.MessageTokensCount)
    assert count.input_tokens == msg.usage.input_tokens == 2 + 3 + 5 + 4
    seen = mock_upstream.state.requests[-1]
    assert seen["path"] == "/anthropic/v1/messages/count_tokens" and "max_tokens" not in seen["body"]
    assert mock_upstream.state.calls["/anthropic/v1/messages/count_tokens"] == 1


async def test_tools_cost_five_tokens_each(mock_upstream: MockUpstream) -> None:
    c = claude(mock_upstream)
    messages: Any = [{"role": "user", "content": "weather in Paris?"}]
    plain = await c.messages.count_tokens(model="m", messages=messages)
    tooled = await c.messages.count_tokens(model="m", messages=messages, tools=[WEATHER, CLOCK],
                                           tool_choice={"type": "tool", "name": "get_time"})
    assert (plain.input_tokens, tooled.input_tokens) == (3, 3 + 2 * 5)
    # a tool round counts its tool_result text, as the messages endpoint does
    call = (await c.messages.create(model="m", max_tokens=50, messages=messages, tools=[WEATHER])).content[0]
    assert call.type == "tool_use"
    round_trip: Any = [*messages, {"role": "assistant", "content": [call.model_dump()]},
                       {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                     "content": "sunny and 21C"}]}]
    answer = await c.messages.create(model="m", max_tokens=50, messages=round_trip, tools=[WEATHER])
    counted = await c.messages.count_tokens(model="m", messages=round_trip, tools=[WEATHER])
    assert counted.input_tokens == answer.usage.input_tokens + 5 == 3 + 3 + 5


async def test_count_tokens_rejects_like_anthropic(mock_upstream: MockUpstream) -> None:
    c = claude(mock_upstream)
    hi: Any = [{"role": "user", "content": "hi"}]
    for extra, message in (({"max_tokens": 10}, "max_tokens: Extra inputs are not permitted"),
                           ({"stream": True}, "stream: Extra inputs are not permitted"),
                           ({"temperature": 0.5}, "temperature: Extra inputs are not permitted")):
        with pytest.raises(anthropic.BadRequestError, match=message):
            await c.messages.count_tokens(model="m", messages=hi, extra_body=extra)
    with pytest.raises(anthropic.BadRequestError, match="roles must alternate"):
        await c.messages.count_tokens(model="m", messages=[{"role": "user", "content": "a"},
                                                           {"role": "user", "content": "b"}])
    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        await c.messages.count_tokens(model="m", tools=[WEATHER], messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t9", "content": "x"}]}])
    with pytest.raises(anthropic.BadRequestError, match=r"tools\.0\.custom\.name"):
        await c.messages.count_tokens(model="m", messages=hi, tools=[{**WEATHER, "name": "bad name"}])
    with pytest.raises(anthropic.AuthenticationError):
        await claude(mock_upstream, "wrong").messages.count_tokens(model="m", messages=hi)


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, {"x-api-key": KEY}, 400,
     "anthropic-version: header is required"),
    ({"messages": [{"role": "user", "content": "hi"}]}, {"x-api-key": KEY, "anthropic-version": "2023-06-01"}, 400,
     "model: Field required"),
    ({"model": "m"}, {"x-api-key": KEY, "anthropic-version": "2023-06-01"}, 400, "messages: Field required"),
])
async def test_raw_requests(mock_upstream: MockUpstream, http: aiohttp.ClientSession, body: dict[str, Any],
                            headers: dict[str, str], status: int, message: str) -> None:
    async with http.post(mock_upstream.url + "/anthropic/v1/messages/count_tokens", json=body, headers=headers) as r:
        data = await r.json()
    assert r.status == status, data
    assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    assert message in data["error"]["message"]


async def test_count_tokens_faults(mock_upstream: MockUpstream) -> None:
    hi: Any = [{"role": "user", "content": "hi"}]
    mock_upstream.configure(error_status=529)
    with pytest.raises(anthropic.OverloadedError):
        await claude(mock_upstream).messages.count_tokens(model="m", messages=hi)
    mock_upstream.configure(error_status=None, error_rate=1.0)
    with pytest.raises(anthropic.InternalServerError) as failed:
        await claude(mock_upstream).messages.count_tokens(model="m", messages=hi)
    assert failed.value.body == {"type": "error", "error": {"type": "api_error", "message": "mock upstream error 500"},
                                 "request_id": failed.value.request_id}


def test_checks_read_the_count_tokens_typeddict() -> None:
    keys = sdk_keys("MessageCountTokensParams")
    assert keys is not None
    required, allowed = keys
    assert required == {"model", "messages"}
    assert {"system", "tools", "tool_choice", "thinking"} <= allowed and "max_tokens" not in allowed


def test_server_tools_are_checked_against_their_own_sdk_type() -> None:
    from mockupstream.anthropic_checks import server_tools

    types = server_tools()
    assert types["web_search_20250305"] == "WebSearchTool20250305Param" and "custom" not in types
