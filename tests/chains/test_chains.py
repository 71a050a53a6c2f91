"""Chains through the real server: POST /v1/gateway/chains (JSON and stream) and `model: "chain/<name>"` from the
official `openai` SDK; every step metered with the chain id; on_error stop / skip / fallback; limits (max_steps,
deadline) and the whole chain's estimated cost checked against the budget first; templates refused safely."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, auth, base_config

POOR_KEY = "sk-test-poor"
STEPS = [{"name": "first", "model": "demo", "prompt": "Say {{ input }}"},
         {"name": "second", "model": "demo",
          "messages": [{"role": "system", "content": "be brief"},
                       {"role": "user", "content": "Again: {{ steps.first.output }}"}]}]


def chains_config(**overrides: Any) -> dict[str, Any]:
    cfg = base_config(**overrides)
    cfg["providers"]["broken"] = {"type": "mock", "mock": {"error_status": 500}}
    cfg["providers"]["slow"] = {"type": "mock", "mock": {"latency": "2s"}}
    cfg["models"]["broken"] = {"route": [{"provider": "broken", "model": "b-1"}], "retry": {"attempts": 1}}
    cfg["models"]["slow"] = {"route": [{"provider": "slow", "model": "s-1"}]}
    cfg["models"]["pricey"] = {"route": [{"provider": "mock", "model": "pricey-1"}]}
    cfg["pricing"] = {"mock/pricey-1": {"input": 1000, "output": 1000}}
    cfg["keys"].append({"name": "poor", "key": POOR_KEY, "budget": {"usd": 1}})
    cfg["chains"] = {"max_steps": 3, "deadline": "1s",
                     "named": {"echo-twice": {"steps": STEPS}}}
    return cfg


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> GatewayServer:
    return await gateway_factory(chains_config())


async def post(http: aiohttp.ClientSession, gw: GatewayServer, body: dict[str, Any],
               key: str = DEV_KEY) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.post(gw.url + "/v1/gateway/chains", json=body, headers=auth(key)) as r:
        return r.status, await r.json(content_type=None), r


async def test_steps_see_the_input_and_earlier_outputs(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    status, data, r = await post(http, gw, {"input": "hello", "steps": STEPS})
    assert status == 200, data
    assert data["object"] == "gateway.chain" and data["id"].startswith("chain_")
    assert [s["output"] for s in data["steps"]] == ["Say hello", "Again: Say hello"]
    assert data["output"] == "Again: Say hello"
    assert [s["status"] for s in data["steps"]] == ["ok", "ok"]
    first = data["steps"][0]
    assert first["usage"]["completion_tokens"] == 2 and first["latency_ms"] > 0 and first["served_by"] == "demo"
    assert data["totals"]["completion_tokens"] == sum(s["usage"]["completion_tokens"] for s in data["steps"])
    assert r.headers["x-gateway-chain-id"] == data["id"]
    await gw.gateway.ledger_writer.flush()
    rows = await gw.gateway.ledger_store.recent_usage(limit=10)
    assert sorted(r["request_id"] for r in rows) == [f"{data['id']}-1", f"{data['id']}-2"]
    assert {r["chain_id"] for r in rows} == {data["id"]}


async def test_named_chain_through_chat_completions(gw: GatewayServer) -> None:
    client = gw.openai()
    r = await client.chat.completions.with_raw_response.create(
        model="chain/echo-twice", messages=[{"role": "user", "content": "hi"}])
    assert r.parse().choices[0].message.content == "Again: Say hi"
    chain_id = r.headers["x-gateway-chain-id"]
    chunks = [c async for c in await client.chat.completions.create(
        model="chain/echo-twice", stream=True, messages=[{"role": "user", "content": "yo"}])]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Again: Say yo"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="chain/nope", messages=[{"role": "user", "content": "x"}])
    await gw.gateway.ledger_writer.flush()
    rows = await gw.gateway.ledger_store.recent_usage(limit=20)
    assert sum(1 for r in rows if r["chain_id"] == chain_id) == 2
    assert all(r["alias"] == "demo" for r in rows)  # no row for the chain itself: its steps are the calls


async def test_stream_lists_steps_then_streams_the_last(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    async with http.post(gw.url + "/v1/gateway/chains", headers=auth(),
                         json={"chain": "echo-twice", "input": "abc", "stream": True}) as r:
        assert r.status == 200
        text = await r.text()
    events = [e for e in text.split("\n\n") if e]
    assert events[0].startswith("event: gateway.chain.step\ndata: ")
    assert orjson.loads(events[0].split("data: ", 1)[1])["output"] == "Say abc"
    chunks = [orjson.loads(e[6:]) for e in events[1:-2] if e.startswith("data: ")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Again: Say abc"
    summary = orjson.loads(events[-2].split("data: ", 1)[1])
    assert events[-2].startswith("event: gateway.chain\n") and summary["output"] == "Again: Say abc"
    assert summary["steps"][1]["usage"]["completion_tokens"] == 3  # one word, one token
    assert events[-1] == "data: [DONE]"


async def test_on_error_stop_skip_and_fallback(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    def chain(on_error: str) -> dict[str, Any]:
        return {"input": "x", "steps": [{"name": "a", "model": "broken", "prompt": "{{ input }}", "on_error": on_error},
                                        {"name": "b", "model": "demo", "prompt": "after [{{ steps.a.output }}]"}]}

    status, data, _ = await post(http, gw, chain("stop"))
    assert status == 502, data
    assert [s["status"] for s in data["error"]["chain"]["steps"]] == ["failed"]
    assert data["error"]["chain"]["steps"][0]["error"]["status"] == 502

    status, data, _ = await post(http, gw, chain("skip"))
    assert status == 200, data
    assert [s["status"] for s in data["steps"]] == ["skipped", "ok"]
    assert data["output"] == "after []"

    status, data, _ = await post(http, gw, chain("fallback:demo"))
    assert status == 200, data
    assert data["steps"][0]["status"] == "fallback" and data["steps"][0]["served_by"] == "demo"
    assert data["steps"][0]["output"] == "x" and len(data["steps"][0]["request_ids"]) == 2
    assert data["output"] == "after [x]"


async def test_limits_and_bad_input(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    status, data, _ = await post(http, gw, {"input": "x", "steps": STEPS * 2})
    assert (status, data["error"]["code"], data["error"]["param"]) == (400, "too_many_steps", "steps")
    status, data, _ = await post(http, gw, {"steps": [{"model": "demo", "prompt": "{{ ''.__class__ }}"}]})
    assert (status, data["error"]["param"]) == (400, "steps.0.prompt")
    assert "__class__" in data["error"]["message"]
    status, data, _ = await post(http, gw, {"steps": [{"model": "demo"}]})
    assert status == 400 and data["error"]["param"].startswith("steps.0")
    status, data, _ = await post(http, gw, {"steps": [{"model": "demo", "prompt": "x", "on_error": "retry"}]})
    assert (status, data["error"]["param"]) == (400, "steps.0.on_error")
    status, data, _ = await post(http, gw, {"steps": [{"model": "demo", "prompt": "{{ steps.nope.output }}"}]})
    assert (status, data["error"]["code"]) == (400, "template_error")
    status, data, _ = await post(http, gw, {"chain": "ghost"})
    assert (status, data["error"]["code"]) == (404, "chain_not_found")
    status, data, _ = await post(http, gw, {"steps": [{"model": "slow", "prompt": "x"}]})
    assert (status, data["error"]["code"]) == (504, "chain_timeout")
    async with http.post(gw.url + "/v1/gateway/chains", json={"steps": STEPS}) as r:
        assert r.status == 401


async def test_whole_chain_estimate_checked_against_the_budget_first(gw: GatewayServer,
                                                                      http: aiohttp.ClientSession) -> None:
    steps = [{"model": "demo", "prompt": "{{ input }}"},
             {"model": "pricey", "prompt": "{{ steps.step1.output }}", "params": {"max_tokens": 2000}}]
    status, data, _ = await post(http, gw, {"input": "x", "steps": steps}, key=POOR_KEY)
    assert (status, data["error"]["code"]) == (429, "insufficient_quota")
    await gw.gateway.ledger_writer.flush()
    assert await gw.gateway.ledger_store.recent_usage(limit=5) == []  # refused before the first step ran
    status, data, _ = await post(http, gw, {"input": "x", "steps": steps[:1]}, key=POOR_KEY)
    assert status == 200, data
