"""Anthropic and Gemini providers end to end: the official openai SDK talks to the real gateway, which
talks to the mock upstream's Anthropic Messages / Gemini wire formats (validated like the real APIs)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import GatewayFactory, GatewayServer, MockUpstream, base_config

ALIASES = ["claude", "gem"]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather for a city",
                                           "parameters": {"type": "object", "required": ["city"],
                                                          "properties": {"city": {"type": "string"}}}}}]


def config(mock_url: str, key: str = "sk-upstream") -> dict[str, Any]:
    cfg = base_config()
    cfg["providers"].update({
        "anthropic": {"type": "anthropic", "base_url": mock_url + "/anthropic", "api_key": key, "default_max_tokens": 64},
        "gemini": {"type": "gemini", "base_url": mock_url, "api_key": key},
    })
    routes = {"claude": ("anthropic", "claude-sonnet-4-5"), "gem": ("gemini", "gemini-2.5-flash"),
              "gem-embed": ("gemini", "text-embedding-004"), "claude-embed": ("anthropic", "claude-sonnet-4-5"),
              "gem-missing": ("gemini", "missing-model")}
    for alias, (provider, model) in routes.items():
        cfg["models"][alias] = {"route": [{"provider": provider, "model": model}], "retry": {"attempts": 1}}
    return cfg


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    return await gateway_factory(config(mock_upstream.url))


def msg(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are a test."}, {"role": "user", "content": text}]


def last_sent(mock: MockUpstream) -> dict[str, Any]:
    return mock.state.requests[-1]


@pytest.mark.parametrize("alias", ALIASES)
async def test_chat(gw: GatewayServer, mock_upstream: MockUpstream, alias: str) -> None:
    resp = await gw.openai().chat.completions.create(model=alias, messages=msg("hello gateway"))
    assert resp.choices[0].message.content == "hello gateway"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == ("claude-sonnet-4-5" if alias == "claude" else "gemini-2.5-flash")
    assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (6, 2)
    sent = last_sent(mock_upstream)
    if alias == "claude":
        assert sent["path"] == "/anthropic/v1/messages" and sent["headers"]["x-api-key"] == "sk-upstream"
        assert sent["body"]["system"] == "You are a test." and sent["body"]["max_tokens"] == 64
    else:
        assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert sent["body"]["systemInstruction"] == {"parts": [{"text": "You are a test."}]}


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream(gw: GatewayServer, alias: str, include_usage: bool) -> None:
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await gw.openai().chat.completions.create(model=alias, messages=msg("one two three"), stream=True, **extra)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    if include_usage:
        assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (7, 3)
        assert chunks[-1].choices == []
    else:
        assert usage == [] and all(c.choices for c in chunks)


@pytest.mark.parametrize("alias", ALIASES)
async def test_max_tokens_stop_and_merged_turns(gw: GatewayServer, alias: str) -> None:
    client = gw.openai()
    resp = await client.chat.completions.create(model=alias, messages=msg("a b c d e"), max_tokens=2)
    assert (resp.choices[0].message.content, resp.choices[0].finish_reason) == ("a b", "length")
    resp = await client.chat.completions.create(model=alias, messages=msg("a b STOP c"), stop="STOP")
    assert resp.choices[0].message.content == "a b"
    # consecutive user turns and a mid-conversation system message: merged as both APIs need
    resp = await client.chat.completions.create(model=alias, messages=[
        {"role": "user", "content": "first"}, {"role": "system", "content": "be terse"},
        {"role": "user", "content": "second turn"}, {"role": "assistant", "content": "ok"},
        {"role": "assistant", "content": "really"}, {"role": "user", "content": "third"}])
    assert resp.choices[0].message.content == "third"


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_loop(gw: GatewayServer, alias: str, stream: bool) -> None:
    client = gw.openai()
    messages: list[Any] = [{"role": "user", "content": "what is the weather in Oslo?"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            model=alias, messages=messages, tools=TOOLS, stream=True)]
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        call_id = next(d.id for d in deltas if d.id)
        name = next(d.function.name for d in deltas if d.function and d.function.name)
        arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        resp = await client.chat.completions.create(model=alias, messages=messages, tools=TOOLS, tool_choice="required")
        call = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments  # type: ignore[union-attr]
        finish = [resp.choices[0].finish_reason]
        assert resp.choices[0].message.content is None
    assert (name, arguments, finish) == ("get_weather", '{"city":"mock"}', ["tool_calls"])
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny 21C"}]
    resp = await client.chat.completions.create(model=alias, messages=messages, tools=TOOLS)
    assert resp.choices[0].message.content == "the tool said sunny 21C"
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("alias", ALIASES)
async def test_tool_choice_none_answers_in_text(gw: GatewayServer, mock_upstream: MockUpstream, alias: str) -> None:
    resp = await gw.openai().chat.completions.create(model=alias, messages=msg("weather in Oslo?"), tools=TOOLS,
                                                     tool_choice="none")
    assert resp.choices[0].message.content == "weather in Oslo?" and not resp.choices[0].message.tool_calls
    body = last_sent(mock_upstream)["body"]
    assert body.get("tool_choice") == {"type": "none"} or body.get("toolConfig") == {
        "functionCallingConfig": {"mode": "NONE"}}


@pytest.mark.parametrize("alias", ALIASES)
async def test_images(gw: GatewayServer, mock_upstream: MockUpstream, alias: str) -> None:
    resp = await gw.openai().chat.completions.create(model=alias, messages=[{"role": "user", "content": [
        {"type": "text", "text": "describe these"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}])
    assert resp.choices[0].message.content == "describe these"
    body = last_sent(mock_upstream)["body"]
    if alias == "claude":
        assert [b["type"] for b in body["messages"][0]["content"]] == ["text", "image", "image"]
        assert body["messages"][0]["content"][2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    else:
        assert body["contents"][0]["parts"][1:] == [
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}}]
    with pytest.raises(openai.BadRequestError):
        await gw.openai().chat.completions.create(model=alias, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png,not-base64"}}]}])


async def test_anthropic_prompt_cache_usage(gw: GatewayServer) -> None:
    resp = await gw.openai().chat.completions.create(model="claude", messages=[
        {"role": "system", "content": [{"type": "text", "text": "a long cached preamble",
                                        "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "hi there"}])
    assert resp.usage is not None and resp.usage.prompt_tokens == 6
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 4


# ---------------------------------------------------------------- embeddings
async def test_gemini_embeddings(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    client = gw.openai()
    resp = await client.embeddings.create(model="gem-embed", input=["alpha beta", "gamma"], dimensions=4)  # base64 default
    assert [d.index for d in resp.data] == [0, 1] and [len(d.embedding) for d in resp.data] == [4, 4]
    assert last_sent(mock_upstream)["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert resp.usage.prompt_tokens == 5  # estimated: ceil(10/4) + ceil(5/4)
    one = await client.embeddings.create(model="gem-embed", input="alpha beta", dimensions=4, encoding_format="float")
    assert last_sent(mock_upstream)["path"] == "/v1beta/models/text-embedding-004:embedContent"
    assert one.data[0].embedding == pytest.approx(resp.data[0].embedding, rel=1e-6)


async def test_anthropic_has_no_embeddings(gw: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        await gw.openai().embeddings.create(model="claude-embed", input="x")
    assert e.value.code == "embeddings_not_supported"


# ---------------------------------------------------------------- errors as SDK exception types
@pytest.mark.parametrize(("alias", "text", "exc", "code"), [
    ("claude", "[[too_long]] huge", openai.BadRequestError, "context_length_exceeded"),
    ("gem", "[[too_long]] huge", openai.BadRequestError, "context_length_exceeded"),
    ("gem", "[[content_filter]] bad words", openai.BadRequestError, "content_filter"),
    ("gem-missing", "hi", openai.NotFoundError, "model_not_found"),
])
async def test_errors(gw: GatewayServer, alias: str, text: str, exc: type[Exception], code: str) -> None:
    with pytest.raises(exc) as e:
        await gw.openai().chat.completions.create(model=alias, messages=msg(text))
    assert e.value.code == code  # type: ignore[attr-defined]


@pytest.mark.parametrize("alias", ALIASES)
async def test_output_filter_finish_reason(gw: GatewayServer, alias: str) -> None:
    resp = await gw.openai().chat.completions.create(model=alias, messages=msg("[[output_filter]] tell me"))
    assert resp.choices[0].finish_reason == "content_filter"
    chunks = [c async for c in await gw.openai().chat.completions.create(
        model=alias, messages=msg("[[output_filter]] tell me"), stream=True)]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["content_filter"]


@pytest.mark.parametrize("alias", ALIASES)
async def test_upstream_rate_limit_and_overload(gw: GatewayServer, mock_upstream: MockUpstream, alias: str) -> None:
    mock_upstream.configure(error_status=429)
    with pytest.raises(openai.RateLimitError) as rl:
        await gw.openai().chat.completions.create(model=alias, messages=msg("x"))
    assert rl.value.response.headers.get("retry-after") == "1"
    mock_upstream.configure(error_status=529 if alias == "claude" else 503)
    with pytest.raises(openai.InternalServerError) as e:
        await gw.openai().chat.completions.create(model=alias, messages=msg("x"), stream=True)
    assert e.value.status_code == 503


@pytest.mark.parametrize(("alias", "marker"), [("claude", "overloaded"), ("gem", "UNAVAILABLE")])
async def test_error_mid_stream(gw: GatewayServer, alias: str, marker: str) -> None:
    stream = await gw.openai().chat.completions.create(
        model=alias, messages=msg(f"a b c [[stream_error:{marker}]]"), stream=True)
    got = []
    with pytest.raises(openai.APIError):
        async for c in stream:
            got += [c.choices[0].delta.content or ""] if c.choices else []
    assert "".join(got) == "a"


@pytest.mark.parametrize("alias", ALIASES)
async def test_stream_cut_is_an_error(gw: GatewayServer, mock_upstream: MockUpstream, alias: str) -> None:
    mock_upstream.configure(cut_after=2)
    stream = await gw.openai().chat.completions.create(model=alias, messages=msg("a b c d e f"), stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


@pytest.mark.parametrize("alias", ALIASES)
async def test_wrong_upstream_key_is_a_gateway_error(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                                     alias: str) -> None:
    gw = await gateway_factory(config(mock_upstream.url, key="wrong"))
    with pytest.raises(openai.InternalServerError) as e:
        await gw.openai().chat.completions.create(model=alias, messages=msg("hi"))
    assert e.value.status_code == 502 and e.value.code == "upstream_auth_error"  # type: ignore[attr-defined]
