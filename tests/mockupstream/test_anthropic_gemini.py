"""The mock upstream's Anthropic and Gemini wire formats are faithful: the official `anthropic` and
`google-genai` SDKs parse what it sends (stream and not), it rejects what the real APIs reject with
their error bodies, and it accepts the gateway translators' golden requests."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from mockupstream.anthropic_checks import sdk_keys
from tests.conftest import MockUpstream
from tests.providers.goldens import golden

KEY = "sk-upstream"
AHEAD = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
GHEAD = {"x-goog-api-key": KEY}
WEATHER = {"name": "get_weather", "description": "Get the weather",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}


def claude(mock: MockUpstream, key: str = KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=mock.url + "/anthropic", api_key=key, max_retries=0)


def gemini(mock: MockUpstream, key: str = KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=mock.url, api_version="v1beta"))


# ---------------------------------------------------------------- Anthropic with the official SDK
async def test_anthropic_sdk_messages(mock_upstream: MockUpstream) -> None:
    c = claude(mock_upstream)
    msg = await c.messages.create(model="claude-mock", max_tokens=100, system="Be brief.",
                                  messages=[{"role": "user", "content": "hello there claude"}])
    assert isinstance(msg, anthropic.types.Message) and msg.content[0].type == "text"
    assert msg.content[0].text == "hello there claude" and msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (5, 3)
    cut = await c.messages.create(model="m", max_tokens=2, messages=[{"role": "user", "content": "a b c d"}],
                                  stop_sequences=["zzz"])
    assert (cut.content[0].text, cut.stop_reason) == ("a b", "max_tokens")  # type: ignore[union-attr]
    stop = await c.messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "a b STOP c"}],
                                   stop_sequences=["STOP"])
    assert (stop.content[0].text, stop.stop_reason, stop.stop_sequence) == ("a b", "stop_sequence", "STOP")  # type: ignore[union-attr]
    assert [m.id async for m in c.models.list()] == ["claude-mock-1"]


async def test_anthropic_sdk_stream_text_and_tools(mock_upstream: MockUpstream) -> None:
    c = claude(mock_upstream)
    async with c.messages.stream(model="m", max_tokens=100,
                                 messages=[{"role": "user", "content": "one two three"}]) as s:
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
    assert text == "one two three" and final.stop_reason == "end_turn" and final.usage.output_tokens == 3
    async with c.messages.stream(model="m", max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                 messages=[{"role": "user", "content": "what is the weather in Paris?"}]) as s:
        final = await s.get_final_message()
    block = final.content[0]
    assert final.stop_reason == "tool_use" and block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {"location": "mock"})
    answer = await c.messages.create(model="m", max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                     messages=[{"role": "user", "content": "weather?"},
                                               {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
                                               {"role": "user", "content": [{"type": "tool_result",
                                                                             "tool_use_id": block.id,
                                                                             "content": "sunny 21C"}]}])
    assert answer.content[0].text == "the tool said sunny 21C"  # type: ignore[union-attr]


async def test_anthropic_sdk_errors_and_markers(mock_upstream: MockUpstream) -> None:
    msgs: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError):
        await claude(mock_upstream, "wrong").messages.create(model="m", max_tokens=5, messages=msgs)
    with pytest.raises(anthropic.BadRequestError) as bad:
        await claude(mock_upstream).messages.create(model="m", max_tokens=5,
                                                    messages=[{"role": "user", "content": "x [[too_long]]"}])
    assert "prompt is too long" in str(bad.value)
    refused = await claude(mock_upstream).messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x y [[output_filter]]"}])
    assert refused.stop_reason == "refusal"
    with pytest.raises(anthropic.APIError, match="overloaded"):
        async with claude(mock_upstream).messages.stream(
                model="m", max_tokens=50, messages=[{"role": "user", "content": "a b [[stream_error:overloaded]]"}]) as s:
            async for _ in s:
                pass
    mock_upstream.configure(error_status=529)
    with pytest.raises(anthropic.OverloadedError):
        await claude(mock_upstream).messages.create(model="m", max_tokens=5, messages=msgs)
    mock_upstream.configure(error_status=429)
    with pytest.raises(anthropic.RateLimitError) as rl:
        await claude(mock_upstream).messages.create(model="m", max_tokens=5, messages=msgs)
    assert rl.value.response.headers["retry-after"] == "1"


# ---------------------------------------------------------------- Anthropic validation
def ok_body(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **kw}


TOOL_TURNS = [{"role": "user", "content": "weather?"},
              {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]}]


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    (ok_body(), {"x-api-key": KEY}, 400, "anthropic-version: header is required"),
    (ok_body(), {"anthropic-version": "2023-06-01"}, 401, "x-api-key header is required"),
    (ok_body(frequency_penalty=1), AHEAD, 400, "frequency_penalty: Extra inputs are not permitted"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, AHEAD, 400, "max_tokens: Field required"),
    (ok_body(max_tokens="10"), AHEAD, 400, "max_tokens: Input should be a valid integer"),
    (ok_body(temperature=1.5), AHEAD, 400, "temperature: Input should be a number between 0 and 1"),
    (ok_body(stop_sequences=["\n"]), AHEAD, 400, "each stop sequence must contain non-whitespace"),
    (ok_body(messages=[]), AHEAD, 400, "at least one message is required"),
    (ok_body(messages=[{"role": "system", "content": "x"}]), AHEAD, 400, "messages.0.role"),
    (ok_body(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]), AHEAD, 400,
     'roles must alternate between "user" and "assistant", but found multiple "user" roles in a row'),
    (ok_body(messages=[{"role": "user", "content": [{"type": "text", "text": "a", "foo": 1}]}]), AHEAD, 400,
     "messages.0.content.0.text.foo: Extra inputs are not permitted"),
    (ok_body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]), AHEAD, 400,
     "text content blocks must be non-empty"),
    (ok_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), AHEAD, 400,
     "Input tag 'image_url'"),
    (ok_body(messages=[{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "not base64!"}}]}]), AHEAD, 400, "invalid base64"),
    (ok_body(messages=[{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/bmp", "data": "Qk0="}}]}]), AHEAD, 400, "media_type"),
    (ok_body(messages=[*TOOL_TURNS, {"role": "user", "content": "x"}], tools=[WEATHER]), AHEAD, 400,
     "`tool_use` ids were found without `tool_result` blocks immediately after: t1"),
    (ok_body(messages=[*TOOL_TURNS, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2"}]}],
             tools=[WEATHER]), AHEAD, 400, "unexpected `tool_use_id` found in `tool_result` blocks: t2"),
    (ok_body(messages=[*TOOL_TURNS, {"role": "user", "content": [
        {"type": "text", "text": "x"}, {"type": "tool_result", "tool_use_id": "t1"}]}], tools=[WEATHER]), AHEAD, 400,
     "tool_result blocks must come first"),
    (ok_body(messages=[*TOOL_TURNS, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}]),
     AHEAD, 400, "must define tools"),
    (ok_body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b "}]), AHEAD, 400,
     "final assistant content cannot end with trailing whitespace"),
    (ok_body(tools=[{**WEATHER, "name": "bad name"}]), AHEAD, 400, "tools.0.custom.name"),
    (ok_body(tools=[WEATHER], tool_choice={"type": "function"}), AHEAD, 400, "tool_choice"),
    (ok_body(tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}), AHEAD, 400, "not found in tools"),
    (ok_body(metadata={"user": "x"}), AHEAD, 400, "metadata.user: Extra inputs are not permitted"),
])
async def test_anthropic_mock_rejects_like_anthropic(mock_upstream: MockUpstream, http: aiohttp.ClientSession,
                                                     body: dict[str, Any], headers: dict[str, str], status: int,
                                                     message: str) -> None:
    async with http.post(mock_upstream.url + "/anthropic/v1/messages", json=body, headers=headers) as r:
        data = await r.json()
    assert r.status == status, data
    assert data["type"] == "error" and message in data["error"]["message"]
    assert data["error"]["type"] == ("authentication_error" if status == 401 else "invalid_request_error")


@pytest.mark.parametrize("name", ["request_tools_images.json", "request_stream_minimal.json"])
async def test_anthropic_mock_accepts_golden_requests(mock_upstream: MockUpstream, http: aiohttp.ClientSession,
                                                      name: str) -> None:
    g = golden("anthropic", name)["expected"]
    headers = {**g["headers"], "x-api-key": KEY}
    async with http.post(mock_upstream.url + "/anthropic/v1/messages", json=g["body"], headers=headers) as r:
        assert r.status == 200, await r.text()
        raw = await r.read()
    if g["body"].get("stream"):
        assert raw.startswith(b"event: message_start\ndata: ") and raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_anthropic_checks_read_the_sdk_typeddicts() -> None:
    required, allowed = sdk_keys("MessageCreateParams") or ((), ())
    assert set(required) == {"model", "max_tokens", "messages"} and {"system", "tools", "stop_sequences"} <= allowed
    assert sdk_keys("ToolUseBlockParam") is not None and {"id", "name", "input", "type"} <= sdk_keys("ToolUseBlockParam")[0]  # type: ignore[index]


# ---------------------------------------------------------------- Gemini with the official SDK
async def test_gemini_sdk_generate_and_stream(mock_upstream: MockUpstream) -> None:
    g = gemini(mock_upstream)
    config = types.GenerateContentConfig(
        system_instruction="Be brief.", max_output_tokens=50, temperature=0.2, top_p=0.9, seed=1, stop_sequences=["zzz"],
        candidate_count=2, presence_penalty=0.1, frequency_penalty=0.1,
        safety_settings=[types.SafetySetting(category=types.HarmCategory.HARM_CATEGORY_HARASSMENT,
                                             threshold=types.HarmBlockThreshold.BLOCK_ONLY_HIGH)])
    r = await g.aio.models.generate_content(model="gemini-mock", contents="hello there gemini", config=config)
    assert [c.content.parts[0].text for c in r.candidates or [] if c.content and c.content.parts] == ["hello there gemini"] * 2
    assert r.candidates and r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata and (r.usage_metadata.prompt_token_count, r.usage_metadata.candidates_token_count) == (5, 6)
    assert r.model_version == "gemini-mock"
    chunks = [c async for c in await g.aio.models.generate_content_stream(model="m", contents="one two three")]
    assert "".join(c.text or "" for c in chunks) == "one two three"
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.candidates_token_count == 3
    cut = await g.aio.models.generate_content(model="m", contents="a b c d",
                                              config=types.GenerateContentConfig(max_output_tokens=2))
    assert cut.text == "a b" and cut.candidates and cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


async def test_gemini_sdk_function_calling_and_embeddings(mock_upstream: MockUpstream) -> None:
    g = gemini(mock_upstream)
    fn = types.FunctionDeclaration(name="get_weather", description="weather", parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]))
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[fn])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    r = await g.aio.models.generate_content(model="m", contents="weather in Paris?", config=config)
    assert r.function_calls and (r.function_calls[0].name, r.function_calls[0].args) == ("get_weather", {"city": "mock"})
    history = [types.Content(role="user", parts=[types.Part(text="weather in Paris?")]), r.candidates[0].content,  # type: ignore[index]
               types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather",
                                                                                  response={"output": "rainy"})])]
    answer = await g.aio.models.generate_content(model="m", contents=history, config=config)  # type: ignore[arg-type]
    assert answer.text == "the tool said rainy"
    emb = await g.aio.models.embed_content(model="text-embedding-004", contents=["a b", "c"],
                                           config=types.EmbedContentConfig(output_dimensionality=4))
    assert emb.embeddings and [len(e.values or []) for e in emb.embeddings] == [4, 4]


async def test_gemini_sdk_errors(mock_upstream: MockUpstream) -> None:
    with pytest.raises(genai_errors.ClientError) as e:
        await gemini(mock_upstream, "wrong").aio.models.generate_content(model="m", contents="hi")
    assert e.value.code == 400 and e.value.status == "INVALID_ARGUMENT" and "API key not valid" in (e.value.message or "")
    with pytest.raises(genai_errors.ClientError) as e:
        await gemini(mock_upstream).aio.models.generate_content(model="missing-model", contents="hi")
    assert e.value.code == 404
    blocked = await gemini(mock_upstream).aio.models.generate_content(model="m", contents="x [[content_filter]]")
    assert not blocked.candidates and blocked.prompt_feedback and blocked.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    mock_upstream.configure(error_status=503)
    with pytest.raises(genai_errors.ServerError) as se:
        await gemini(mock_upstream).aio.models.generate_content(model="m", contents="hi")
    assert se.value.status == "UNAVAILABLE"


# ---------------------------------------------------------------- Gemini validation
def gbody(**kw: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **kw}


CALL = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}, {"functionCall": {"name": "f", "args": {}}}]}


@pytest.mark.parametrize(("body", "headers", "status", "message"), [
    (gbody(), {}, 403, "Method doesn't allow unregistered callers"),
    (gbody(), {"x-goog-api-key": "bad"}, 400, "API key not valid"),
    (gbody(foo=1), GHEAD, 400, 'Unknown name "foo": Cannot find field.'),
    (gbody(generationConfig={"maxTokens": 5}), GHEAD, 400, 'Unknown name "maxTokens"'),
    (gbody(contents=[{"role": "user", "parts": [{"text": "a", "image": {}}]}]), GHEAD, 400, 'Unknown name "image"'),
    ({"contents": []}, GHEAD, 400, "contents is not specified"),
    (gbody(contents=[{"role": "assistant", "parts": [{"text": "a"}]}]), GHEAD, 400, "Please use a valid role: user, model."),
    (gbody(contents=[{"role": "user", "parts": []}]), GHEAD, 400, "contents.parts must not be empty"),
    (gbody(contents=[{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "!!"}}]}]), GHEAD, 400,
     "Base64 decoding failed"),
    (gbody(contents=[{"role": "user", "parts": [{"text": "a"}]}, CALL,
                     {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]), GHEAD, 400,
     "number of function response parts is equal to the number of function call parts"),
    (gbody(tools=[{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {}}}]}]), GHEAD,
     400, "should be non-empty for OBJECT type"),
    (gbody(tools=[{"functionDeclarations": [{"name": "f", "parameters": {
        "type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "additionalProperties": False}}]}]), GHEAD, 400,
     'Unknown name "additionalProperties"'),
    (gbody(tools=[{"functionDeclarations": [{"name": "9 bad"}]}]), GHEAD, 400, "Invalid function name"),
    (gbody(generationConfig={"responseSchema": {"type": "STRING"}}), GHEAD, 400, "response_mime_type"),
])
async def test_gemini_mock_rejects_like_google(mock_upstream: MockUpstream, http: aiohttp.ClientSession,
                                               body: dict[str, Any], headers: dict[str, str], status: int,
                                               message: str) -> None:
    async with http.post(mock_upstream.url + "/v1beta/models/gemini-x:generateContent", json=body, headers=headers) as r:
        data = await r.json()
    assert r.status == status, data
    assert data["error"]["code"] == status and message in data["error"]["message"]


@pytest.mark.parametrize("name", ["request_tools_images.json", "request_json_schema.json"])
async def test_gemini_mock_accepts_golden_requests(mock_upstream: MockUpstream, http: aiohttp.ClientSession,
                                                   name: str) -> None:
    g = golden("gemini", name)["expected"]
    url = g["url"].replace("https://generativelanguage.googleapis.com", mock_upstream.url)
    async with http.post(url, json=g["body"], headers={**g["headers"], **GHEAD}) as r:
        assert r.status == 200, await r.text()
        raw = await r.read()
    if "alt=sse" in url:
        events = raw.split(b"\r\n\r\n")
        assert events[-1] == b"" and all(e.startswith(b"data: {") for e in events[:-1])
        assert orjson.loads(events[-2][6:])["candidates"][0]["finishReason"] == "STOP"


async def test_gemini_stream_without_alt_sse_is_a_json_array(mock_upstream: MockUpstream,
                                                             http: aiohttp.ClientSession) -> None:
    async with http.post(mock_upstream.url + "/v1beta/models/m:streamGenerateContent", json=gbody(), headers=GHEAD) as r:
        data = await r.json()
    assert isinstance(data, list) and data[-1]["candidates"][0]["finishReason"] == "STOP"
    async with http.get(mock_upstream.url + "/v1beta/models", headers=GHEAD) as r:
        assert (await r.json())["models"][0]["name"] == "models/gemini-mock-1"
