"""`responses: native` on a `type: openai` provider: `/v1/responses` goes to the upstream's own `/responses`
untranslated (only the model swapped), its Response and event stream come back as it sent them, metered and
stored like any call. The gateway keeps the conversation: `previous_response_id` is expanded before the request
leaves, so a fallback to a translated deployment answers the same conversation. What only the Responses API can
carry (a hosted tool, a field chat completions lacks) is forwarded there and refused elsewhere with a 400."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest
from jsonschema import Draft202012Validator

from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream
from tests.http.test_openapi_conformance import check
from tests.http.test_responses_api import WEATHER, EventValidators, config, raw_events


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    cfg = config(mock_upstream.url)
    cfg["providers"]["native"] = {"type": "openai", "base_url": mock_upstream.url + "/v1", "api_key": "sk-upstream",
                                  "responses": "native"}
    cfg["models"]["nat"] = {"route": [{"provider": "native", "model": "mock-1"}], "retry": {"attempts": 1}}
    cfg["models"]["nat-fb"] = {"route": [{"provider": "native", "model": "mock-1"}], "retry": {"attempts": 1},
                               "fallbacks": ["claude"]}
    cfg["models"]["nat-cached"] = {"route": [{"provider": "native", "model": "mock-1"}], "cache": {"enabled": True}}
    return await gateway_factory(cfg)


def sent(mock: MockUpstream) -> dict[str, Any]:
    req = mock.state.requests[-1]
    assert req["path"] == "/v1/responses"
    return req["body"]  # type: ignore[no-any-return]


async def test_create_is_forwarded_untranslated(gw: GatewayServer, mock_upstream: MockUpstream,
                                                response_schema: Draft202012Validator) -> None:
    body = {"model": "nat", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello there"}]}],
            "instructions": "Be brief.", "max_output_tokens": 50, "metadata": {"k": "v"}, "store": False,
            "truncation": "auto", "tools": [WEATHER], "tool_choice": "none"}
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/responses", json=body,
                                                    headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        assert r.status == 200, await r.text()
        answer = await r.json()
        headers = r.headers
    assert sent(mock_upstream) == {**body, "model": "mock-1"}  # as the client sent it, the model swapped
    check(response_schema, answer)
    assert answer["model"] == "mock-1" and answer["id"].startswith("resp_")
    assert answer["output"][0]["content"][0]["text"] == "hello there"
    assert headers["x-gateway-provider"] == "native" and float(headers["x-gateway-cost-usd"]) >= 0
    await gw.gateway.ledger_writer.flush()
    row = (await gw.gateway.ledger_store.recent_usage(limit=1))[0]
    assert row["provider"] == "native" and row["prompt_tokens"] == answer["usage"]["input_tokens"]
    assert row["completion_tokens"] == answer["usage"]["output_tokens"] and row["status"] == 200


async def test_hosted_tools_only_where_the_upstream_speaks_the_api(gw: GatewayServer,
                                                                   mock_upstream: MockUpstream) -> None:
    c = gw.openai()
    tools: Any = [{"type": "web_search"}, WEATHER]
    before = mock_upstream.calls
    with pytest.raises(openai.BadRequestError) as bad:
        await c.responses.create(model="up", input="news?", tools=tools)  # a translated deployment
    assert bad.value.param == "tools[0].type" and mock_upstream.calls == before
    resp = await c.responses.create(model="nat", input="what is the weather in Paris?", tools=tools)
    assert sent(mock_upstream)["tools"] == tools
    assert resp.output[0].type == "function_call"


async def test_background_is_refused_even_natively(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    # a background Response is polled with GET /v1/responses/{id}, which the gateway answers from its own store
    with pytest.raises(openai.BadRequestError) as bad:
        await gw.openai().responses.create(model="nat", input="hi", background=True)
    assert bad.value.param == "background" and mock_upstream.calls == 0


async def test_stream_is_relayed_as_sent(gw: GatewayServer, mock_upstream: MockUpstream,
                                         event_schema: EventValidators) -> None:
    events = await raw_events(gw, {"model": "nat", "input": "one two three", "store": False}, event_schema)
    assert sent(mock_upstream)["stream"] is True
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas).split() == ["one", "two", "three"]
    await gw.gateway.ledger_writer.flush()
    row = (await gw.gateway.ledger_store.recent_usage(limit=1))[0]
    assert row["stream"] and row["completion_tokens"] == events[-1]["response"]["usage"]["output_tokens"] == 3


async def test_sdk_stream_and_stored_conversation(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    c = gw.openai()
    first = await c.responses.create(model="nat", input="my name is Ada")
    assert "previous_response_id" not in sent(mock_upstream)
    async with c.responses.stream(model="nat", input="what is my name?", previous_response_id=first.id) as stream:
        second = await stream.get_final_response()
    body = sent(mock_upstream)
    # the gateway expanded the conversation; the upstream never saw the id (it could not know it)
    assert "previous_response_id" not in body
    texts = orjson.dumps(body["input"]).decode()
    assert texts.index("my name is Ada") < texts.index("what is my name?")
    stored = await c.responses.retrieve(second.id)  # stored from the relay
    assert stored.output_text == second.output_text and stored.previous_response_id == first.id
    again = await c.responses.create(model="nat", input="and now?", previous_response_id=second.id, store=False)
    assert again.previous_response_id == second.id  # named again, though the upstream never saw it
    # and the conversation goes on through a translated deployment
    third = await c.responses.create(model="claude", input="again?", previous_response_id=second.id)
    assert third.status == "completed"


async def test_upstream_stream_error_is_relayed_once(gw: GatewayServer) -> None:
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/responses", json={
            "model": "nat", "input": "one two three [[stream_error:server]]", "stream": True, "store": False},
            headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        raw = (await r.read()).decode()
    assert raw.count("event: error") == 1 and raw.count("event: response.failed") == 1
    assert "response.completed" not in raw
    await gw.gateway.ledger_writer.flush()
    row = (await gw.gateway.ledger_store.recent_usage(limit=1))[0]
    assert row["status"] >= 500


async def test_cut_stream_ends_with_numbered_failure(gw: GatewayServer, mock_upstream: MockUpstream,
                                                     event_schema: EventValidators) -> None:
    mock_upstream.configure(cut_after=4)
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/responses", json={
            "model": "nat", "input": "one two three four five", "stream": True, "store": False},
            headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        raw = (await r.read()).decode()
    events = [orjson.loads(b.split("\ndata: ")[1]) for b in raw.split("\n\n") if "\ndata: " in b]
    for e in events:
        event_schema.check(e)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_upstream_errors_and_fallback(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    c = gw.openai()
    with pytest.raises(openai.BadRequestError) as bad:  # the upstream's own validation, as it said it
        await c.responses.create(model="nat", input="hi", extra_body={"bogus": 1})
    assert "bogus" in bad.value.message
    mock_upstream.configure(fail_first=1, error_status=503)
    resp = await c.responses.with_raw_response.create(model="nat-fb", input="hello there")
    assert resp.headers["x-gateway-provider"] == "anthropic"
    assert resp.parse().output_text == "hello there"


async def test_native_answers_are_not_cached(gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    for _ in range(2):
        resp = await gw.openai().responses.with_raw_response.create(model="nat-cached", input="same", store=False)
        assert "x-gateway-cache" not in resp.headers
    assert sum(r["path"] == "/v1/responses" for r in mock_upstream.state.requests) == 2


async def test_optimisation_leaves_what_only_the_native_api_can_carry(gateway_factory: GatewayFactory,
                                                                         mock_upstream: MockUpstream) -> None:
    cfg = config(mock_upstream.url)
    cfg["providers"]["native"] = {"type": "openai", "base_url": mock_upstream.url + "/v1", "api_key": "sk-upstream",
                                  "responses": "native"}
    cfg["models"]["nat"] = {"route": [{"provider": "native", "model": "mock-1"}], "optimize": {"mode": "compact"}}
    gw = await gateway_factory(cfg)
    c = gw.openai()
    plain = await c.responses.with_raw_response.create(model="nat", input="hello    there", store=False)
    assert plain.headers["x-gateway-prompt-saved-tokens"]  # optimised: the translation served it
    assert mock_upstream.state.requests[-1]["path"] == "/v1/chat/completions"
    hosted = await c.responses.with_raw_response.create(model="nat", input="hello    there", store=False,
                                                        tools=[{"type": "web_search"}])
    assert "x-gateway-prompt-saved-tokens" not in hosted.headers  # forwarded as sent, not refused
    assert sent(mock_upstream)["input"] == "hello    there"


async def test_agents_take_the_translated_path(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> None:
    cfg = config(mock_upstream.url)
    cfg["providers"]["native"] = {"type": "openai", "base_url": mock_upstream.url + "/v1", "api_key": "sk-upstream",
                                  "responses": "native"}
    cfg["models"]["nat"] = {"route": [{"provider": "native", "model": "mock-1"}]}
    cfg["agents"] = {"helper": {"model": "nat", "system": "You help.", "variables": {}}}
    gw = await gateway_factory(cfg)
    resp = await gw.openai().responses.create(model="agent/helper", input="hi", store=False)
    assert resp.output_text and mock_upstream.state.requests[-1]["path"] == "/v1/chat/completions"
    assert mock_upstream.state.requests[-1]["body"]["messages"][0] == {"role": "system", "content": "You help."}


@pytest.fixture(scope="module")
def response_schema() -> Draft202012Validator:
    from tests.http.test_openapi_conformance import spec_validator

    return spec_validator("Response")


@pytest.fixture(scope="module")
def event_schema() -> EventValidators:
    return EventValidators()
