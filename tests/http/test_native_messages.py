"""`/v1/messages` to an alias served by Anthropic is forwarded with minimal change: what chat completions has no
place for (`thinking`, `top_k`, `cache_control`, the client's `anthropic-beta`) reaches Anthropic, and its answer
and stream come back as it sent them, metered like any call. Other providers get the translation; what only
Anthropic can take is refused there with a 400 naming it. `count_tokens` is Anthropic's own count."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from anthropic.types import Message

from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream
from tests.http.test_anthropic_messages import WEATHER, client, config, raw_events, user

HEADERS = {"x-api-key": DEV_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    cfg = config(mock_upstream.url)
    # an Anthropic alias that falls back to Gemini (translated), and one with the cache on
    cfg["models"]["claude-fb"] = {"route": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}],
                                  "retry": {"attempts": 1}, "fallbacks": ["gem"]}
    cfg["models"]["claude-cached"] = {"route": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}],
                                      "cache": {"enabled": True}}
    return await gateway_factory(cfg)


def sent(mock: MockUpstream) -> dict[str, Any]:
    req = mock.state.requests[-1]
    assert req["path"].startswith("/anthropic/v1/messages")
    return req


async def post(gw: GatewayServer, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any,
                                                                                                          Any]:
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/messages", json=body,
                                                    headers={**HEADERS, **(headers or {})}) as r:
        return r.status, r.headers, orjson.loads(await r.read())


async def test_fields_chat_lacks_reach_anthropic_unchanged(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    system = [{"type": "text", "text": "You are a test. " * 20, "cache_control": {"type": "ephemeral"}}]
    body = {"model": "claude", "max_tokens": 64, "system": system, "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 1024}, "metadata": {"user_id": "u-7"},
            "messages": user("hello gateway")}
    status, headers, answer = await post(gw, body, {"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert status == 200, answer
    req = sent(mock_upstream)
    assert req["body"] == {**body, "model": "claude-sonnet-4-5"}  # only the model swapped
    assert req["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert req["headers"]["x-api-key"] == "sk-upstream"  # the account's key, never the client's
    msg = Message.model_validate(answer)
    assert msg.usage.cache_read_input_tokens and msg.usage.cache_read_input_tokens > 0  # the mock saw cache_control
    assert headers["x-gateway-provider"] == "anthropic" and float(headers["x-gateway-cost-usd"]) > 0
    await gw.gateway.ledger_writer.flush()
    row = (await gw.gateway.ledger_store.recent_usage(limit=1))[0]
    assert row["provider"] == "anthropic" and row["completion_tokens"] == msg.usage.output_tokens
    # Anthropic's input_tokens leave out the cache reads; the ledger's prompt counts them, as OpenAI's does
    assert row["prompt_tokens"] == msg.usage.input_tokens + msg.usage.cache_read_input_tokens


async def test_server_tools_reach_anthropic(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}, WEATHER]
    msg = await client(gw).messages.create(model="claude", max_tokens=64, tools=tools,  # type: ignore[arg-type]
                                           messages=user("what is the weather in Paris?"))
    assert sent(mock_upstream)["body"]["tools"] == tools
    assert msg.stop_reason == "tool_use" and msg.content[-1].name == "get_weather"  # type: ignore[union-attr]
    # the mock checks a server tool's fields as Anthropic does: an unknown one is Anthropic's 400, relayed
    with pytest.raises(anthropic.BadRequestError, match="bogus"):
        await client(gw).messages.create(model="claude", max_tokens=8, messages=user("hi"),
                                         tools=[{"type": "web_search_20250305", "name": "web_search", "bogus": 1}])  # type: ignore[list-item]


async def test_answer_is_anthropics_bytes(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    _, _, answer = await post(gw, {"model": "claude", "max_tokens": 64, "messages": user("one two")})
    assert answer["model"] == "claude-sonnet-4-5" and answer["id"].startswith("msg_")
    assert answer["content"] == [{"type": "text", "text": "one two"}]


async def test_metadata_keeps_only_what_anthropic_accepts(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    status, _, answer = await post(gw, {"model": "claude", "max_tokens": 8, "messages": user("hi"),
                                        "metadata": {"user_id": "u-1", "team": "x"}})
    assert status == 200, answer
    assert sent(mock_upstream)["body"]["metadata"] == {"user_id": "u-1"}


async def test_stream_is_relayed_as_sent(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    events = await raw_events(gw, {"model": "claude", "max_tokens": 64, "top_k": 3, "messages": user("a b c")})
    assert sent(mock_upstream)["body"]["top_k"] == 3
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and kinds.count("message_delta") == 1
    texts = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert "".join(texts) == "a b c"
    await gw.gateway.ledger_writer.flush()
    row = (await gw.gateway.ledger_store.recent_usage(limit=1))[0]
    assert row["completion_tokens"] == 3 and row["prompt_tokens"] > 0 and row["stream"]


async def test_sdk_stream_with_tools(gw: GatewayServer) -> None:
    async with client(gw).messages.stream(model="claude", max_tokens=64, tools=[WEATHER],  # type: ignore[list-item]
                                          messages=user("what is the weather in Paris?")) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].type == "tool_use"


async def test_upstream_stream_error_reaches_the_client_once(gw: GatewayServer) -> None:
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/messages", headers=HEADERS, json={
            "model": "claude", "max_tokens": 64, "stream": True,
            "messages": user("one two three [[stream_error:overloaded]]")}) as r:
        raw = (await r.read()).decode()
    assert raw.count("event: error") == 1 and "overloaded_error" in raw
    assert "message_stop" not in raw
    await gw.gateway.ledger_writer.flush()
    row = (await gw.gateway.ledger_store.recent_usage(limit=1))[0]
    assert row["status"] >= 500  # metered as the failure it was


async def test_upstream_error_status_in_anthropics_shape(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(error_status=429)
    with pytest.raises(anthropic.RateLimitError):
        await client(gw).messages.create(model="claude", max_tokens=8, messages=user("hi"))
    mock_upstream.configure(error_status=None)
    # Anthropic's own validation message comes back (here: the mock's, for a field it does not know)
    status, _, answer = await post(gw, {"model": "claude", "max_tokens": 8, "messages": user("hi"), "bogus": 1})
    assert status == 400 and answer["type"] == "error" and "bogus" in answer["error"]["message"]


async def test_what_only_anthropic_takes_is_refused_elsewhere(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    before = mock_upstream.calls
    status, _, answer = await post(gw, {"model": "gem", "max_tokens": 8, "messages": user("hi"), "bogus": 1})
    assert status == 400 and answer["error"]["message"] == "bogus: Extra inputs are not permitted"
    status, _, answer = await post(gw, {"model": "gem", "max_tokens": 8, "messages": user("hi"),
                                        "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    assert status == 400 and answer["error"]["message"].startswith("tools.0.type:")
    assert mock_upstream.calls == before  # refused before any upstream call or quota


async def test_fallback_to_a_translated_provider(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(fail_first=1, error_status=503)
    resp = await client(gw).messages.with_raw_response.create(model="claude-fb", max_tokens=16,
                                                               messages=user("hello there"))
    msg = await resp.parse()
    assert resp.headers["x-gateway-provider"] == "gemini" and msg.content[0].text == "hello there"  # type: ignore[union-attr]
    paths = [r["path"] for r in mock_upstream.state.requests]
    assert paths[-2] == "/anthropic/v1/messages" and "gemini" in paths[-1]


async def test_native_answers_are_not_cached(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    body = {"model": "claude-cached", "max_tokens": 8, "messages": user("same question")}
    for _ in range(2):
        status, headers, _ = await post(gw, body)
        assert status == 200 and "x-gateway-cache" not in headers
    assert sum(r["path"] == "/anthropic/v1/messages" for r in mock_upstream.state.requests) == 2


async def test_count_tokens_is_anthropics_own(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    c = client(gw)
    resp = await c.messages.with_raw_response.count_tokens(model="claude", messages=user("hello " * 50),
                                                           tools=[WEATHER])  # type: ignore[list-item]
    counted = await resp.parse()
    assert resp.headers["x-gateway-provider"] == "anthropic" and "x-gateway-estimate" not in resp.headers
    req = sent(mock_upstream)
    assert req["path"] == "/anthropic/v1/messages/count_tokens" and req["body"]["model"] == "claude-sonnet-4-5"
    estimate = await c.messages.with_raw_response.count_tokens(model="gem", messages=user("hello " * 50),
                                                               tools=[WEATHER])  # type: ignore[list-item]
    assert estimate.headers["x-gateway-estimate"] == "true"
    assert counted.input_tokens > 0 and counted.input_tokens != (await estimate.parse()).input_tokens
    # Anthropic unreachable (5xx): the estimate stands in
    mock_upstream.configure(error_status=500)
    fallback = await c.messages.with_raw_response.count_tokens(model="claude", messages=user("hello " * 50))
    assert fallback.headers["x-gateway-estimate"] == "true" and (await fallback.parse()).input_tokens > 0
