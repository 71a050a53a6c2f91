"""Azure, Mistral, Ollama, Bedrock and CLI providers end to end: the official openai SDK talks to the
real gateway, which talks to the mock upstream's wire format for each provider (or runs a fake CLI)."""

from __future__ import annotations

import sys
from typing import Any

import openai
import pytest

from tests.conftest import GatewayFactory, GatewayServer, MockUpstream, base_config
from tests.providers.goldens import FIXTURES

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
ALIASES = ["az", "mi", "ol", "br", "cl"]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "weather for a city",
                                           "parameters": {"type": "object", "required": ["city"],
                                                          "properties": {"city": {"type": "string"}}}}}]


def providers_config(mock_url: str, bedrock_secret: str = "sk-upstream") -> dict[str, Any]:
    cfg = base_config()
    cfg["providers"].update({
        "azure": {"type": "azure", "base_url": mock_url, "api_key": "sk-upstream"},
        "mistral": {"type": "mistral", "base_url": mock_url + "/mistral/v1", "api_key": "sk-upstream"},
        "ollama": {"type": "ollama", "base_url": mock_url + "/ollama"},
        "bedrock": {"type": "bedrock", "base_url": mock_url, "region": "us-east-1",
                    "access_key_id": "AKIDEXAMPLE", "secret_access_key": bedrock_secret},
        "cli": {"type": "cli", "command": [sys.executable, str(FIXTURES / "cli" / "fake_model.py"), "{model}"],
                "max_concurrency": 2},
    })
    routes = {"az": ("azure", "gpt-4o-deploy"), "mi": ("mistral", "mistral-small-latest"),
              "ol": ("ollama", "llama3.2"), "br": ("bedrock", CLAUDE), "cl": ("cli", "tiny"),
              "az-missing": ("azure", "missing-deploy"), "ol-missing": ("ollama", "missing-model"),
              "br-embed": ("bedrock", "amazon.titan-embed-text-v2:0"), "az-embed": ("azure", "emb-deploy"),
              "ol-embed": ("ollama", "nomic-embed-text")}
    for alias, (provider, model) in routes.items():
        cfg["models"][alias] = {"route": [{"provider": provider, "model": model}], "retry": {"attempts": 1}}
    return cfg


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    return await gateway_factory(providers_config(mock_upstream.url))


def expected_text(alias: str, words: str) -> str:
    return f"model=tiny\n{words.replace(' ', chr(10))}" if alias == "cl" else words


def msg(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are a test."}, {"role": "user", "content": text}]


@pytest.mark.parametrize("alias", ALIASES)
async def test_chat(gw: GatewayServer, alias: str) -> None:
    resp = await gw.openai().chat.completions.create(model=alias, messages=msg("hello gateway"))
    assert resp.choices[0].message.content == expected_text(alias, "hello gateway")
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_chat_stream(gw: GatewayServer, alias: str, include_usage: bool) -> None:
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await gw.openai().chat.completions.create(model=alias, messages=msg("one two three"), stream=True,
                                                       **extra)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_text(alias, "one two three")
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    if include_usage:
        assert len(usage) == 1 and usage[0].completion_tokens > 0 and usage[0].total_tokens > 0
    else:
        assert usage == []
        assert all(c.choices for c in chunks)  # no usage-only or annotation-only chunk reached the client


@pytest.mark.parametrize("alias", ["az", "mi", "br"])
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_loop(gw: GatewayServer, alias: str, stream: bool) -> None:
    client = gw.openai()
    messages: list[Any] = [{"role": "user", "content": "weather in Oslo?"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            model=alias, messages=messages, tools=TOOLS, tool_choice="required", stream=True)]
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        call_id = next(d.id for d in deltas if d.id)
        name = next(d.function.name for d in deltas if d.function and d.function.name)
        arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        resp = await client.chat.completions.create(model=alias, messages=messages, tools=TOOLS,
                                                    tool_choice="required")
        call = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments  # type: ignore[union-attr]
        finish = [resp.choices[0].finish_reason]
    assert (name, arguments, finish) == ("get_weather", '{"city":"mock"}', ["tool_calls"])
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny 21C"}]
    resp = await client.chat.completions.create(model=alias, messages=messages, tools=TOOLS)
    assert resp.choices[0].message.content == "the tool said sunny 21C"


async def test_mistral_never_receives_stream_options(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    stream = await gw.openai().chat.completions.create(
        model="mi", messages=msg("x"), stream=True, stream_options={"include_usage": True}, seed=3,
        max_completion_tokens=50, user="someone", parallel_tool_calls=False, tools=TOOLS, tool_choice="none")
    assert [c async for c in stream]
    sent = mock_upstream.state.requests[-1]["body"]
    assert "stream_options" not in sent and "user" not in sent and "seed" not in sent
    assert (sent["random_seed"], sent["max_tokens"]) == (3, 50)


async def test_bedrock_request_is_signed_converse(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    await gw.openai().chat.completions.create(model="br", messages=msg("hi"), max_tokens=20, temperature=0.1)
    sent = mock_upstream.state.requests[-1]
    assert sent["path"] == f"/model/{CLAUDE}/converse"
    assert sent["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert sent["body"]["system"] == [{"text": "You are a test."}]
    assert sent["body"]["inferenceConfig"] == {"maxTokens": 20, "temperature": 0.1}


@pytest.mark.parametrize("alias", ["az", "br", "ol"])
async def test_embeddings(gw: GatewayServer, alias: str) -> None:
    model = {"az": "az-embed", "br": "br-embed", "ol": "ol-embed"}[alias]
    client = gw.openai()
    resp = await client.embeddings.create(model=model, input=["alpha beta", "gamma", "delta"])  # base64 by default
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert len({len(d.embedding) for d in resp.data}) == 1 and resp.usage.prompt_tokens == 4
    floats = await client.embeddings.create(model=model, input="alpha beta", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(resp.data[0].embedding, rel=1e-6)


async def test_bedrock_embeddings_dimensions(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    resp = await gw.openai().embeddings.create(model="br-embed", input="x", dimensions=256)
    assert len(resp.data[0].embedding) == 256
    assert mock_upstream.state.requests[-1]["body"] == {"inputText": "x", "dimensions": 256}


# ---------------------------------------------------------------- errors as SDK exception types
@pytest.mark.parametrize("alias,text,exc,code", [
    ("az", "[[content_filter]] bad words", openai.BadRequestError, "content_filter"),
    ("az-missing", "hi", openai.NotFoundError, "model_not_found"),
    ("ol-missing", "hi", openai.NotFoundError, "model_not_found"),
    ("br", "[[too_long]] huge", openai.BadRequestError, "context_length_exceeded"),
    ("cl", "fail", openai.InternalServerError, "cli_error"),
])
async def test_errors(gw: GatewayServer, alias: str, text: str, exc: type[Exception], code: str) -> None:
    with pytest.raises(exc) as e:
        await gw.openai().chat.completions.create(model=alias, messages=msg(text))
    assert e.value.code == code  # type: ignore[attr-defined]


async def test_azure_output_filter_finish_reason(gw: GatewayServer) -> None:
    resp = await gw.openai().chat.completions.create(model="az", messages=msg("[[output_filter]] tell me"))
    assert resp.choices[0].finish_reason == "content_filter"
    chunks = [c async for c in await gw.openai().chat.completions.create(
        model="az", messages=msg("[[output_filter]] tell me"), stream=True)]
    assert chunks[-1].choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize("alias", ["az", "mi", "ol", "br"])
async def test_upstream_rate_limit(gw: GatewayServer, mock_upstream: MockUpstream, alias: str) -> None:
    mock_upstream.configure(error_status=429)
    with pytest.raises(openai.RateLimitError):
        await gw.openai().chat.completions.create(model=alias, messages=msg("x"))
    mock_upstream.configure(error_status=503)
    with pytest.raises(openai.APIStatusError) as e:
        await gw.openai().chat.completions.create(model=alias, messages=msg("x"), stream=True)
    assert e.value.status_code in (502, 503)


async def test_bedrock_image_url_is_rejected_clearly(gw: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        await gw.openai().chat.completions.create(model="br", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "data URL" in str(e.value) and e.value.code == "unsupported_image_url"
    ok = await gw.openai().chat.completions.create(model="br", messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    assert ok.choices[0].message.content == "look"


async def test_bedrock_stream_exception_mid_stream(gw: GatewayServer) -> None:
    stream = await gw.openai().chat.completions.create(
        model="br", messages=msg("[[stream_error:throttlingException]] a b c"), stream=True)
    with pytest.raises(openai.APIError) as e:
        async for _ in stream:
            pass
    assert "mock stream failure" in str(e.value)


async def test_bedrock_wrong_secret(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> None:
    gw = await gateway_factory(providers_config(mock_upstream.url, bedrock_secret="wrong"))
    with pytest.raises(openai.InternalServerError) as e:
        await gw.openai().chat.completions.create(model="br", messages=msg("x"))
    assert e.value.status_code == 502 and e.value.code == "upstream_auth_error"
    assert "credentials" in str(e.value)
