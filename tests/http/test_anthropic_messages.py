"""`POST /v1/messages` end to end: the official `anthropic` SDK talks to the real gateway, which serves the call
through the one pipeline from every provider type behind it (the mock upstream's OpenAI, Anthropic, Gemini and
Bedrock wire formats, validated like the real APIs). Anthropic publishes no OpenAPI spec to vendor: the reference
for the answers' shape is the SDK's own pydantic types (`anthropic.types.Message`, `RawMessageStreamEvent`),
which every body and stream event here is validated against."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import TypeAdapter

from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream, base_config

ALIASES = ["up", "claude", "gem", "br"]  # OpenAI-compatible, Anthropic, Gemini, Bedrock
TOOL_ALIASES = ["claude", "gem", "br"]  # the mock's OpenAI format answers text only
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {"name": "get_weather", "description": "weather for a city",
           "input_schema": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
SYSTEM = "You are a test."


def config(mock_url: str, **overrides: Any) -> dict[str, Any]:
    cfg = base_config(mock_url, **overrides)
    cfg["providers"].update({
        "anthropic": {"type": "anthropic", "base_url": mock_url + "/anthropic", "api_key": "sk-upstream"},
        "gemini": {"type": "gemini", "base_url": mock_url, "api_key": "sk-upstream"},
        "bedrock": {"type": "bedrock", "base_url": mock_url, "region": "us-east-1",
                    "access_key_id": "AKIDEXAMPLE", "secret_access_key": "sk-upstream"},
    })
    routes = {"claude": ("anthropic", "claude-sonnet-4-5"), "gem": ("gemini", "gemini-2.5-flash"),
              "br": ("bedrock", "anthropic.claude-3-haiku-20240307-v1:0"), "up": ("up", "mock-1")}
    for alias, (provider, model) in routes.items():
        cfg["models"][alias] = {"route": [{"provider": provider, "model": model}], "retry": {"attempts": 1}}
    return cfg


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    return await gateway_factory(config(mock_upstream.url))


def client(gw: GatewayServer, key: str = DEV_KEY, **kw: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0, **kw)


def user(*content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(content) if len(content) > 1 or not isinstance(content[0], str)
             else content[0]}]


async def raw_events(gw: GatewayServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream as it goes over the wire: each event's name must be its data's `type`, and each validates."""
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/messages", json={**body, "stream": True}, headers={
            "x-api-key": DEV_KEY, "anthropic-version": "2023-06-01"}) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        raw = (await r.read()).decode()
    out = []
    for block in raw.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        if not lines:
            continue
        name, data = lines[0].removeprefix("event: "), orjson.loads(lines[1].removeprefix("data: "))
        assert data["type"] == name, block
        if name != "ping":  # a keep-alive the SDK skips; not one of RawMessageStreamEvent's members
            EVENTS.validate_python(data)
        out.append(data)
    return out


@pytest.mark.parametrize("alias", ALIASES)
async def test_create(gw: GatewayServer, mock_upstream: MockUpstream, alias: str) -> None:
    resp = await client(gw).messages.with_raw_response.create(
        model=alias, max_tokens=64, system=SYSTEM, messages=user("hello gateway"), extra_body={"temperature": 0.5},
        metadata={"user_id": "u-1"})
    msg = Message.model_validate(orjson.loads(resp.http_response.content))  # strict: the SDK's own type
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "hello gateway"  # type: ignore[union-attr]
    assert (msg.type, msg.role, msg.stop_reason) == ("message", "assistant", "end_turn")
    assert msg.id.startswith("msg_") and msg.usage.output_tokens == 2 and msg.usage.input_tokens > 0
    assert resp.headers["x-gateway-provider"] and float(resp.headers["x-gateway-cost-usd"]) >= 0
    if alias == "claude":  # the Anthropic provider got the system prompt and sampling as sent
        sent = mock_upstream.state.requests[-1]["body"]
        assert (sent["system"], sent["max_tokens"], sent["temperature"]) == (SYSTEM, 64, 0.5)
        assert sent["metadata"] == {"user_id": "u-1"}


@pytest.mark.parametrize("alias", ALIASES)
async def test_stream(gw: GatewayServer, alias: str) -> None:
    async with client(gw).messages.stream(model=alias, max_tokens=64, system=SYSTEM,
                                          messages=user("one two three")) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "one two three" and len(texts) == 3
    assert final.stop_reason == "end_turn" and final.content[0].text == "one two three"  # type: ignore[union-attr]
    assert final.usage.output_tokens == 3 and final.usage.input_tokens > 0
    events = await raw_events(gw, {"model": alias, "max_tokens": 64, "messages": user("one two three")})
    kinds = [e["type"] for e in events if e["type"] != "ping"]  # Anthropic's own stream (relayed) pings elsewhere
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[2:5] == ["content_block_delta"] * 3
    assert kinds[5:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "ping" in [e["type"] for e in events]
    assert {e["delta"]["type"] for e in events if e["type"] == "content_block_delta"} == {"text_delta"}


@pytest.mark.parametrize("alias", TOOL_ALIASES)
async def test_tool_use_and_result(gw: GatewayServer, alias: str) -> None:
    ask = user("what is the weather in Paris?")
    c = client(gw)
    msg = await c.messages.create(model=alias, max_tokens=64, messages=ask, tools=[WEATHER],  # type: ignore[list-item]
                                  tool_choice={"type": "any"})
    assert msg.stop_reason == "tool_use"
    call = msg.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather" and set(call.input) == {"city"}  # type: ignore[arg-type]
    async with c.messages.stream(model=alias, max_tokens=64, messages=ask, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        final = await stream.get_final_message()
    streamed = final.content[-1]
    assert final.stop_reason == "tool_use" and streamed.type == "tool_use" and streamed.input == call.input
    events = await raw_events(gw, {"model": alias, "max_tokens": 64, "messages": ask, "tools": [WEATHER]})
    assert any(e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta" for e in events)
    # the answer goes back as a tool_result; the mock replies "the tool said <result>"
    turns = [*ask, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    after = await c.messages.create(model=alias, max_tokens=64, messages=turns, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    assert after.stop_reason == "end_turn" and after.content[0].text == "the tool said sunny"  # type: ignore[union-attr]


async def test_tools_reach_an_openai_upstream_as_functions(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    await client(gw).messages.create(model="up", max_tokens=16, messages=user("hi"), tools=[WEATHER],  # type: ignore[list-item]
                                     tool_choice={"type": "tool", "name": "get_weather",
                                                  "disable_parallel_tool_use": True},
                                     stop_sequences=["END", "STOP"])
    sent = mock_upstream.state.requests[-1]["body"]
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER[
        "input_schema"], "description": "weather for a city"}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False and sent["stop"] == ["END", "STOP"] and sent["max_tokens"] == 16


async def test_stop_sequences(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    msg = await client(gw).messages.create(model="claude", max_tokens=64, messages=user("one two three four"),
                                           stop_sequences=["three"])
    assert msg.content[0].text == "one two"  # type: ignore[union-attr]
    assert mock_upstream.state.requests[-1]["body"]["stop_sequences"] == ["three"]
    cut = await client(gw).messages.create(model="claude", max_tokens=2, messages=user("one two three four"))
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "one two"  # type: ignore[union-attr]


@pytest.mark.parametrize("alias", ALIASES)
async def test_image_block(gw: GatewayServer, alias: str) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    msg = await client(gw).messages.create(model=alias, max_tokens=64,
                                           messages=user(image, {"type": "text", "text": "describe this"}))
    assert msg.content[0].text == "describe this"  # type: ignore[union-attr]


async def test_bearer_key_and_request_headers(gw: GatewayServer) -> None:
    c = anthropic.AsyncAnthropic(base_url=gw.url, auth_token=DEV_KEY, api_key=None, max_retries=0)
    resp = await c.messages.with_raw_response.create(model="demo", max_tokens=8, messages=user("hi"))
    assert resp.status_code == 200 and resp.headers["x-request-id"]


async def test_errors_in_anthropic_shape(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    with pytest.raises(anthropic.AuthenticationError) as auth:
        await client(gw, key="sk-wrong").messages.create(model="demo", max_tokens=8, messages=user("hi"))
    assert auth.value.status_code == 401 and auth.value.body["type"] == "error"  # type: ignore[index]
    assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as nf:
        await client(gw).messages.create(model="no-such-alias", max_tokens=8, messages=user("hi"))
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client(gw).messages.create(model="demo", max_tokens=8, messages=user("hi"), extra_body={"temperature": 3})
    assert bad.value.body["error"] == {"type": "invalid_request_error",  # type: ignore[index]
                                       "message": "temperature: Input should be a number from 0 to 1"}
    with pytest.raises(anthropic.BadRequestError, match=r"messages\.0\.role"):
        await client(gw).messages.create(model="demo", max_tokens=8,
                                         messages=[{"role": "system", "content": "x"}])  # type: ignore[typeddict-item]
    mock_upstream.configure(error_status=429)
    with pytest.raises(anthropic.RateLimitError) as rl:
        await client(gw).messages.create(model="claude", max_tokens=8, messages=user("hi"))
    assert rl.value.body["error"]["type"] == "rate_limit_error" and rl.value.response.headers["retry-after"]  # type: ignore[index]
    mock_upstream.configure(error_status=529)
    with pytest.raises(anthropic.OverloadedError) as ov:
        await client(gw).messages.create(model="claude", max_tokens=8, messages=user("hi"), stream=True)
    assert ov.value.status_code == 529 and ov.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_raw_error_bodies(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    async def post(body: bytes) -> tuple[int, str]:
        headers = {"x-api-key": DEV_KEY, "content-type": "application/json"}
        async with http.post(gw.url + "/v1/messages", data=body, headers=headers) as r:
            data = await r.json()
            assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error", data
            return r.status, data["error"]["message"]

    status, message = await post(b"{")
    assert status == 400 and message.startswith("The request body is not valid JSON")
    assert await post(orjson.dumps({"model": "demo", "messages": user("hi")})) == (400, "max_tokens: Field required")
    assert await post(orjson.dumps({"model": "demo", "max_tokens": 4, "messages": user("hi"), "n": 2})) == (
        400, "n: Extra inputs are not permitted")
    assert await post(orjson.dumps({"model": "demo", "max_tokens": 4, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp",
                                                                  "data": "AA=="}}]}]})) == (
        400, "messages.0.content.0.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or "
             "'image/webp'")
    async with http.get(gw.url + "/v1/messages", headers={"x-api-key": DEV_KEY}) as r:
        assert r.status == 405 and (await r.json())["type"] == "error"


async def test_permission_and_rate_limits_of_the_key(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> None:
    cfg = config(mock_upstream.url)
    cfg["keys"] = [{"name": "dev", "key": DEV_KEY, "models": ["demo"], "limits": {"rpm": 1}}]
    gw = await gateway_factory(cfg)
    with pytest.raises(anthropic.PermissionDeniedError):
        await client(gw).messages.create(model="claude", max_tokens=8, messages=user("hi"))
    await client(gw).messages.create(model="demo", max_tokens=8, messages=user("hi"))
    with pytest.raises(anthropic.RateLimitError) as rl:
        await client(gw).messages.create(model="demo", max_tokens=8, messages=user("hi"))
    assert rl.value.response.headers["retry-after"]


async def test_stream_error_after_start(gw: GatewayServer) -> None:
    stream = await client(gw).messages.create(model="claude", max_tokens=64, stream=True,
                                              messages=user("[[stream_error:overloaded]] a b c"))
    got = []
    with pytest.raises(anthropic.APIStatusError) as e:
        async for event in stream:
            got.append(event.type)
    assert got[0] == "message_start" and "overloaded" in str(e.value)


async def test_same_pipeline_cache_ledger_and_metrics(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> None:
    gw = await gateway_factory(config(mock_upstream.url, cache={"enabled": True}))
    c = client(gw)
    first = await c.messages.with_raw_response.create(model="up", max_tokens=16, messages=user("cache me"))
    again = await c.messages.with_raw_response.create(model="up", max_tokens=16, messages=user("cache me"))
    assert (first.headers["x-gateway-cache"], again.headers["x-gateway-cache"]) == ("miss", "hit")
    assert (await again.parse()).content == (await first.parse()).content
    async with c.messages.stream(model="up", max_tokens=16, messages=user("cache me")) as stream:  # replayed hit
        assert "".join([t async for t in stream.text_stream]) == "cache me"
        assert stream.response.headers["x-gateway-cache"] == "hit"
        final = await stream.get_final_message()
    assert final.usage.output_tokens == 2 and final.stop_reason == "end_turn"
    # an OpenAI chat completion of the same request shares the entry: one cache, one pipeline
    chat = await gw.openai().chat.completions.with_raw_response.create(
        model="up", max_tokens=16, messages=[{"role": "user", "content": "cache me"}])
    assert chat.headers["x-gateway-cache"] == "hit"
    assert sum(1 for r in mock_upstream.state.requests if r["path"] == "/v1/chat/completions") == 1
    await gw.gateway.ledger_writer.flush()
    rows = list(reversed(await gw.gateway.ledger_store.recent_usage(limit=10)))
    assert [(r["alias"], r["cache_hit"], r["stream"], r["status"]) for r in rows] == [
        ("up", False, False, 200), ("up", True, False, 200), ("up", True, True, 200), ("up", True, False, 200)]
    assert (rows[0]["provider"], rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == ("up", 2, 2)


async def test_count_tokens(gw: GatewayServer) -> None:
    c = client(gw)
    small = await c.messages.count_tokens(model="gem", messages=user("hi"))  # the estimate (Anthropic: count.py)
    big = await c.messages.count_tokens(model="gem", system=SYSTEM, messages=user("hello " * 400),
                                        tools=[WEATHER])  # type: ignore[list-item]
    assert isinstance(small, MessageTokensCount) and 0 < small.input_tokens < big.input_tokens
    assert big.input_tokens >= 600  # ~4 characters a token
    with pytest.raises(anthropic.NotFoundError):
        await c.messages.count_tokens(model="nope", messages=user("hi"))
    with pytest.raises(anthropic.AuthenticationError):
        await client(gw, key="sk-wrong").messages.count_tokens(model="gem", messages=user("hi"))

