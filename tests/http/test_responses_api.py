"""`POST /v1/responses` end to end: the official `openai` SDK (`client.responses`) talks to the real gateway, which
serves the call through the one pipeline from every provider type behind it (the mock upstream's OpenAI, Anthropic
and Gemini wire formats). Every Response body and every stream event is validated against the vendored OpenAI
OpenAPI spec (`Response`, `ResponseStreamEvent`, `ErrorResponse`)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream, base_config
from tests.http.test_openapi_conformance import SPEC, check, spec_validator

ALIASES = ["up", "claude", "gem"]  # OpenAI-compatible, Anthropic, Gemini
TOOL_ALIASES = ["claude", "gem"]  # the mock's OpenAI format answers text only
WEATHER = {"type": "function", "name": "get_weather", "description": "weather for a city", "strict": True,
           "parameters": {"type": "object", "required": ["city"], "additionalProperties": False,
                          "properties": {"city": {"type": "string"}}}}
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
       "RU5ErkJggg==")


def config(mock_url: str, **overrides: Any) -> dict[str, Any]:
    cfg = base_config(mock_url, **overrides)
    cfg["providers"].update({
        "anthropic": {"type": "anthropic", "base_url": mock_url + "/anthropic", "api_key": "sk-upstream"},
        "gemini": {"type": "gemini", "base_url": mock_url, "api_key": "sk-upstream"},
    })
    routes = {"claude": ("anthropic", "claude-sonnet-4-5"), "gem": ("gemini", "gemini-2.5-flash"), "up": ("up", "mock-1")}
    for alias, (provider, model) in routes.items():
        cfg["models"][alias] = {"route": [{"provider": provider, "model": model}], "retry": {"attempts": 1}}
    return cfg


@pytest.fixture(scope="module")
def response_schema() -> Draft202012Validator:
    return spec_validator("Response")


class EventValidators:
    """Each stream event against its own member of `ResponseStreamEvent` (picked by its `type`), so a failure
    names the field rather than "not valid under any of the given schemas"."""

    def __init__(self) -> None:
        spec = yaml.load(SPEC.read_text(), Loader=yaml.CSafeLoader)["components"]["schemas"]
        self.by_type: dict[str, Draft202012Validator] = {}
        for ref in spec["ResponseStreamEvent"]["anyOf"]:
            name = ref["$ref"].rsplit("/", 1)[1]
            for kind in spec[name]["properties"]["type"].get("enum", ()):
                self.by_type[kind] = spec_validator(name)

    def check(self, event: dict[str, Any]) -> None:
        assert event["type"] in self.by_type, event["type"]
        check(self.by_type[event["type"]], event)


@pytest.fixture(scope="module")
def event_schema() -> EventValidators:
    return EventValidators()


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    return await gateway_factory(config(mock_upstream.url))


async def raw_events(gw: GatewayServer, body: dict[str, Any], v: EventValidators) -> list[dict[str, Any]]:
    """The stream as it goes over the wire: each event's name is its data's `type`, each validates against the
    spec, and sequence numbers count 0, 1, 2..."""
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/responses", json={**body, "stream": True},
                                                    headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        raw = (await r.read()).decode()
    out = []
    for block in raw.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        if not lines:
            continue
        name, data = lines[0].removeprefix("event: "), orjson.loads(lines[1].removeprefix("data: "))
        assert data["type"] == name, block
        v.check(data)
        out.append(data)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


@pytest.mark.parametrize("alias", ALIASES)
async def test_create(gw: GatewayServer, mock_upstream: MockUpstream, alias: str,
                      response_schema: Draft202012Validator) -> None:
    raw = await gw.openai().responses.with_raw_response.create(
        model=alias, instructions="You are a test.", input="hello gateway", max_output_tokens=64, temperature=0.5,
        metadata={"ticket": "t-1"}, store=False)
    body = orjson.loads(raw.http_response.content)
    check(response_schema, body)
    resp = raw.parse()
    assert resp.output_text == "hello gateway" and resp.status == "completed" and resp.id.startswith("resp_")
    assert [o.type for o in resp.output] == ["message"] and resp.output[0].content[0].type == "output_text"  # type: ignore[union-attr]
    assert resp.usage is not None and resp.usage.output_tokens == 2 and resp.usage.input_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert (resp.instructions, resp.metadata, resp.temperature, resp.store) == ("You are a test.", {"ticket": "t-1"},
                                                                                 0.5, False)
    assert raw.headers["x-gateway-provider"] and float(raw.headers["x-gateway-cost-usd"]) >= 0
    sent = mock_upstream.state.requests[-1]["body"]
    if alias == "claude":  # instructions became the system prompt, max_output_tokens the limit
        assert (sent["system"], sent["max_tokens"], sent["temperature"]) == ("You are a test.", 64, 0.5)
    if alias == "up":
        assert sent["messages"][0] == {"role": "system", "content": "You are a test."}


@pytest.mark.parametrize("alias", ALIASES)
async def test_items_input(gw: GatewayServer, alias: str) -> None:
    """Messages with input_text and input_image parts, and an earlier assistant turn, as items."""
    resp = await gw.openai().responses.create(model=alias, store=False, input=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "first answer",
                                                              "annotations": []}]},
        {"role": "user", "content": [{"type": "input_text", "text": "describe"},
                                     {"type": "input_image", "image_url": PNG, "detail": "auto"}]}])
    assert resp.status == "completed" and resp.output_text


@pytest.mark.parametrize("alias", ALIASES)
async def test_stream(gw: GatewayServer, alias: str, event_schema: EventValidators) -> None:
    async with gw.openai().responses.stream(model=alias, input="one two three", store=False) as stream:
        texts = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(texts) == "one two three" and len(texts) == 3
    assert final.output_text == "one two three" and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == 3
    events = await raw_events(gw, {"model": alias, "input": "one two three", "store": False}, event_schema)
    kinds = [e["type"] for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 3, "response.output_text.done",
                     "response.content_part.done", "response.output_item.done", "response.completed"]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "one two three"


async def test_stream_create_true(gw: GatewayServer) -> None:
    stream = await gw.openai().responses.create(model="up", input="a b", stream=True, store=False)
    kinds = [e.type async for e in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


@pytest.mark.parametrize("alias", TOOL_ALIASES)
async def test_function_call_round_trip(gw: GatewayServer, alias: str, response_schema: Draft202012Validator,
                                        event_schema: EventValidators) -> None:
    c = gw.openai()
    ask = [{"role": "user", "content": "what is the weather in Paris?"}]
    raw = await c.responses.with_raw_response.create(model=alias, input=ask, tools=[WEATHER],  # type: ignore[list-item]
                                                     tool_choice="required", store=False)
    check(response_schema, orjson.loads(raw.http_response.content))
    first = raw.parse()
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and set(orjson.loads(call.arguments)) == {"city"}
    assert call.call_id and call.id and call.id.startswith("fc_")
    follow = await c.responses.create(model=alias, tools=[WEATHER], store=False, input=[  # type: ignore[list-item]
        *ask, {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}])
    assert follow.status == "completed" and follow.output_text
    events = await raw_events(gw, {"model": alias, "input": ask, "tools": [WEATHER], "tool_choice": "required",
                                   "store": False}, event_schema)
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "get_weather" and set(orjson.loads(done["arguments"])) == {"city"}
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    assert events[-1]["response"]["output"][-1]["type"] == "function_call"


async def test_json_schema_format(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    resp = await gw.openai().responses.create(model="up", input="a city please", store=False, text={
        "format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
    sent = mock_upstream.state.requests[-1]["body"]
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "city", "schema": schema, "strict": True}}
    assert resp.text.format.type == "json_schema"  # type: ignore[union-attr]


async def test_max_output_tokens_incomplete(gw: GatewayServer, event_schema: EventValidators) -> None:
    resp = await gw.openai().responses.create(model="up", input="one two three four five", max_output_tokens=2,
                                              store=False)
    assert resp.status == "incomplete" and resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    events = await raw_events(gw, {"model": "up", "input": "one two three four", "max_output_tokens": 2,
                                   "store": False}, event_schema)
    assert events[-1]["type"] == "response.incomplete"


async def test_errors_in_openai_shape(gw: GatewayServer) -> None:
    c = gw.openai()
    with pytest.raises(openai.BadRequestError) as bad:
        await c.responses.create(model="up", input=[{"type": "web_search_call", "id": "x"}], store=False)  # type: ignore[list-item]
    assert bad.value.body["param"] == "input[0].type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        await c.responses.create(model="up", input="x", tools=[{"type": "web_search"}], store=False)  # type: ignore[list-item]
    assert "tools[0].type" in bad.value.message
    with pytest.raises(openai.BadRequestError):
        await c.responses.create(model="up", input="x", extra_body={"bogus": 1})
    with pytest.raises(openai.AuthenticationError):
        await gw.openai(key="sk-wrong").responses.create(model="up", input="x")
    with pytest.raises(openai.NotFoundError):
        await c.responses.create(model="no-such-alias", input="x", store=False)


async def test_stream_error_after_start(gw: GatewayServer, event_schema: EventValidators) -> None:
    events = await raw_events(gw, {"model": "claude", "input": "[[stream_error:overloaded]] a b c", "store": False},
                              event_schema)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-2:] == ["error", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert "overloaded" in events[-2]["message"].lower()


async def test_same_pipeline_cache_and_ledger(gateway_factory: GatewayFactory,
                                                      mock_upstream: MockUpstream) -> None:
    gw = await gateway_factory(config(mock_upstream.url, cache={"enabled": True}))
    c = gw.openai()
    first = await c.responses.with_raw_response.create(model="up", input="cache me", store=False)
    again = await c.responses.with_raw_response.create(model="up", input="cache me", store=False)
    assert (first.headers["x-gateway-cache"], again.headers["x-gateway-cache"]) == ("miss", "hit")
    assert again.parse().output_text == first.parse().output_text == "cache me"
    async with c.responses.stream(model="up", input="cache me", store=False) as stream:  # a replayed hit
        final = await stream.get_final_response()
    assert final.output_text == "cache me" and final.usage is not None and final.usage.output_tokens == 2
    # a chat completion of the same request shares the entry: one cache, one pipeline
    chat = await c.chat.completions.with_raw_response.create(model="up", messages=[{"role": "user",
                                                                                     "content": "cache me"}])
    assert chat.headers["x-gateway-cache"] == "hit"
    await gw.gateway.ledger_writer.flush()
    rows = list(reversed(await gw.gateway.ledger_store.recent_usage(limit=10)))
    assert [(r["alias"], r["cache_hit"], r["stream"], r["status"]) for r in rows] == [
        ("up", False, False, 200), ("up", True, False, 200), ("up", True, True, 200), ("up", True, False, 200)]


SECOND_KEY = "sk-gw-second-key-0123456789"


@pytest.fixture
async def gw2(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    cfg = config(mock_upstream.url)
    cfg["keys"].append({"name": "other", "key": SECOND_KEY, "models": ["*"]})
    return await gateway_factory(cfg)


@pytest.mark.parametrize("alias", ALIASES)
async def test_previous_response_id_replays_the_conversation(gw2: GatewayServer, mock_upstream: MockUpstream,
                                                             alias: str) -> None:
    c = gw2.openai()
    first = await c.responses.create(model=alias, instructions="Be brief.", input="my name is Ada")
    assert first.store is True
    second = await c.responses.create(model=alias, input="what is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    sent = mock_upstream.state.requests[-1]["body"]
    texts = orjson.dumps(sent).decode()
    # the earlier turn and its answer went upstream before this turn; the earlier instructions did not
    assert texts.index("my name is Ada") < texts.index("what is my name?") and "Be brief." not in texts
    async with c.responses.stream(model=alias, input="and again?", previous_response_id=second.id) as stream:
        third = await stream.get_final_response()
    assert third.status == "completed"
    texts = orjson.dumps(mock_upstream.state.requests[-1]["body"]).decode()
    assert texts.index("my name is Ada") < texts.index("what is my name?") < texts.index("and again?")
    # the streamed response was stored as well
    assert (await c.responses.retrieve(third.id)).output_text == third.output_text


async def test_retrieve_delete_and_other_keys(gw2: GatewayServer, response_schema: Draft202012Validator) -> None:
    c, other = gw2.openai(), gw2.openai(key=SECOND_KEY)
    made = await c.responses.create(model="up", input="keep me", metadata={"k": "v"})
    async with aiohttp.ClientSession() as s, s.get(f"{gw2.url}/v1/responses/{made.id}",
                                                   headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        assert r.status == 200
        check(response_schema, await r.json())
    got = await c.responses.retrieve(made.id)
    assert (got.id, got.output_text, got.metadata) == (made.id, "keep me", {"k": "v"})
    for call in (other.responses.retrieve(made.id), other.responses.delete(made.id),
                 other.responses.create(model="up", input="x", previous_response_id=made.id)):
        with pytest.raises((openai.NotFoundError, openai.BadRequestError)) as e:
            await call
        assert made.id in e.value.message
    await c.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        await c.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        await c.responses.delete(made.id)
    with pytest.raises(openai.BadRequestError) as bad:
        await c.responses.create(model="up", input="x", previous_response_id=made.id)
    assert bad.value.code == "previous_response_not_found"
    unstored = await c.responses.create(model="up", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        await c.responses.retrieve(unstored.id)
    with pytest.raises(openai.AuthenticationError):
        await gw2.openai(key="sk-wrong").responses.retrieve(made.id)


async def test_stored_responses_expire(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> None:
    gw = await gateway_factory(config(mock_upstream.url, responses={"store_ttl": 1}))
    c = gw.openai()
    made = await c.responses.create(model="up", input="short lived")
    assert (await c.responses.retrieve(made.id)).id == made.id
    await asyncio.sleep(1.1)
    with pytest.raises(openai.NotFoundError):
        await c.responses.retrieve(made.id)
