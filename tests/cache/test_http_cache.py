"""Exact-match cache through the real HTTP server: hits, replay, headers, money, policies, what is never cached."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import orjson
import pytest
from aiohttp import web

from proxy.core.context import RequestContext
from proxy.observability import metrics as m
from proxy.providers.base import Usage
from tests.cache.conftest import cache_config, chat_body, post
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream, serve


def finished(gw: GatewayServer) -> list[RequestContext]:
    """Every finished request's context, as metering (and the ledger) sees it."""
    seen: list[RequestContext] = []
    gw.gateway.pipeline.meter.on_finish(seen.append)
    return seen


def flat_price(provider: str, model: str, usage: Usage) -> float:
    return usage.prompt_tokens * 0.001 + usage.completion_tokens * 0.002


# ---------------------------------------------------------------- 1. exact-match cache
async def test_second_identical_request_hits(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                             http: Any) -> None:
    s1, h1, b1 = await post(http, cached_gw, chat_body())
    s2, h2, b2 = await post(http, cached_gw, chat_body())
    assert (s1, s2) == (200, 200)
    assert h1["x-gateway-cache"] == "miss" and h2["x-gateway-cache"] == "hit"
    assert h1["x-gateway-cache-key"] == h2["x-gateway-cache-key"]
    assert "x-gateway-cache-age" not in h1 and int(h2["x-gateway-cache-age"]) >= 0
    assert b2 == b1  # the stored bytes, as first sent
    assert mock_upstream.calls == 1
    assert "x-gateway-provider" not in h2  # nobody upstream answered this one


async def test_hit_with_openai_sdk_and_irrelevant_fields(cached_gw: GatewayServer,
                                                        mock_upstream: MockUpstream) -> None:
    client = cached_gw.openai()
    msgs = [{"role": "user", "content": "sdk hello"}]
    first = await client.chat.completions.create(model="up", messages=msgs, temperature=0, user="alice")
    raw = await client.chat.completions.with_raw_response.create(
        model="up", messages=msgs, temperature=0.0, user="bob", metadata={"x": "y"})
    assert raw.headers["x-gateway-cache"] == "hit"
    assert raw.parse().choices[0].message.content == first.choices[0].message.content == "sdk hello"
    other = await client.chat.completions.with_raw_response.create(model="up", messages=msgs, temperature=0.5)
    assert other.headers["x-gateway-cache"] == "miss"
    assert mock_upstream.calls == 2


async def test_key_order_and_whitespace_do_not_matter(cached_gw: GatewayServer, http: Any) -> None:
    raw1 = b'{"model":"up","temperature":0,"messages":[{"role":"user","content":"order"}]}'
    raw2 = b'{ "messages" : [ {"content":"order", "role":"user"} ],\n "temperature":0, "model":"up" }'
    heads = []
    for raw in (raw1, raw2):
        async with http.post(cached_gw.base_url + "/chat/completions", data=raw,
                             headers={"Authorization": f"Bearer {DEV_KEY}",
                                      "Content-Type": "application/json"}) as r:
            heads.append(r.headers["x-gateway-cache"])
    assert heads == ["miss", "hit"]


async def test_embeddings_are_cached(cached_gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    client = cached_gw.openai()
    a = await client.embeddings.with_raw_response.create(model="up", input=["a b", "c"])
    b = await client.embeddings.with_raw_response.create(model="up", input=["a b", "c"])
    assert (a.headers["x-gateway-cache"], b.headers["x-gateway-cache"]) == ("miss", "hit")
    assert a.parse().data[0].embedding == b.parse().data[0].embedding
    c = await client.embeddings.with_raw_response.create(model="up", input=["a b", "c"], dimensions=4)
    assert c.headers["x-gateway-cache"] == "miss" and mock_upstream.calls == 2


async def test_editing_the_route_invalidates(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                             http: Any) -> None:
    cfg = cache_config(mock_upstream.url)
    gw1 = await gateway_factory(cfg)
    _, h1, _ = await post(http, gw1, chat_body())
    cfg2 = cache_config(mock_upstream.url)
    cfg2["models"]["up"]["route"][0]["model"] = "mock-2"
    gw2 = await gateway_factory(cfg2)
    _, h2, _ = await post(http, gw2, chat_body())
    assert h1["x-gateway-cache-key"] != h2["x-gateway-cache-key"]


async def test_hit_is_at_least_3x_faster_than_a_miss(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                                    http: Any) -> None:
    mock_upstream.configure(latency=0.2)
    misses, hits = [], []
    for i in range(3):
        t0 = time.perf_counter()
        _, h, _ = await post(http, cached_gw, chat_body(f"speed {i}"))
        misses.append(time.perf_counter() - t0)
        assert h["x-gateway-cache"] == "miss"
        for _ in range(3):
            t0 = time.perf_counter()
            _, h, _ = await post(http, cached_gw, chat_body(f"speed {i}"))
            hits.append(time.perf_counter() - t0)
            assert h["x-gateway-cache"] == "hit"
    assert statistics.median(hits) * 3 <= statistics.median(misses)


# ---------------------------------------------------------------- 2. stream <-> non-stream
async def test_stream_hit_replays_a_proper_sse_stream(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                                     http: Any) -> None:
    body = chat_body("replay me please")
    _, _, live = await post(http, cached_gw, body)
    client = cached_gw.openai()
    raw = await client.chat.completions.with_raw_response.create(
        **body, stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-gateway-cache"] == "hit"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-gateway-cost-usd"] == "0.00000000"
    text, finish, usage, ids = "", None, None, set()
    async for chunk in raw.parse():
        ids.add(chunk.id)
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    live_json = orjson.loads(live)
    assert text == live_json["choices"][0]["message"]["content"] == "replay me please"
    assert finish == "stop" and ids == {live_json["id"]}
    assert usage is not None and usage.total_tokens == live_json["usage"]["total_tokens"]
    assert mock_upstream.calls == 1

    # without include_usage: no usage anywhere, framing ends with [DONE]
    async with http.post(cached_gw.base_url + "/chat/completions", json={**body, "stream": True},
                         headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        events = (await r.read()).decode().split("\n\n")
    assert events[-2] == "data: [DONE]" and events[-1] == ""
    payloads = [orjson.loads(e[6:]) for e in events[:-2]]
    assert all("usage" not in p for p in payloads)


async def test_non_stream_hits_an_entry_stored_by_a_stream(cached_gw: GatewayServer,
                                                          mock_upstream: MockUpstream) -> None:
    client = cached_gw.openai()
    body = chat_body("streamed first answer")
    parts = []
    async for chunk in await client.chat.completions.create(**body, stream=True):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
    raw = await client.chat.completions.with_raw_response.create(**body)
    assert raw.headers["x-gateway-cache"] == "hit"
    c = raw.parse()
    assert c.choices[0].message.content == "".join(parts) == "streamed first answer"
    assert c.choices[0].finish_reason == "stop"
    assert c.usage is not None and c.usage.completion_tokens == 3  # usage kept though the client did not ask
    assert c.object == "chat.completion"
    assert mock_upstream.calls == 1


@pytest.fixture
async def scripted(gateway_factory: GatewayFactory):  # type: ignore[no-untyped-def]
    """An OpenAI-format upstream that streams whatever chunks a test sets."""
    script: dict[str, Any] = {"chunks": [], "calls": 0}

    async def chat(request: web.Request) -> web.StreamResponse:
        script["calls"] += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for c in script["chunks"]:
            await resp.write(b"data: " + orjson.dumps(c) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    srv = await serve(app)
    gw = await gateway_factory(cache_config(srv.url))
    yield gw, script
    await srv.close()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c9", "object": "chat.completion.chunk", "created": 1, "model": "mock-1",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_stream_with_tool_calls_is_stored_and_replayed(scripted) -> None:  # type: ignore[no-untyped-def]
    gw, script = scripted
    script["chunks"] = [
        _chunk({"role": "assistant", "content": None}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                "function": {"name": "lookup", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "x"}'}}]}),
        _chunk({}, "tool_calls"),
        {"id": "c9", "object": "chat.completion.chunk", "created": 1, "model": "mock-1", "choices": [],
         "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}},
    ]
    client = gw.openai()
    body = chat_body("call a tool", tools=[{"type": "function", "function": {"name": "lookup"}}])
    _ = [c async for c in await client.chat.completions.create(**body, stream=True)]
    raw = await client.chat.completions.with_raw_response.create(**body)
    assert raw.headers["x-gateway-cache"] == "hit"
    msg = raw.parse().choices[0].message
    assert msg.tool_calls and msg.tool_calls[0].function.arguments == '{"q": "x"}'
    assert raw.parse().usage.total_tokens == 10  # type: ignore[union-attr]
    # and replayed as a stream with the same tool call
    args = ""
    async for c in await client.chat.completions.create(**body, stream=True):
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            args += tc.function.arguments or ""  # type: ignore[union-attr]
    assert args == '{"q": "x"}' and script["calls"] == 1


async def test_odd_finish_reason_is_not_cached(scripted) -> None:  # type: ignore[no-untyped-def]
    gw, script = scripted
    script["chunks"] = [_chunk({"role": "assistant", "content": "blocked"}), _chunk({}, "content_filter")]
    client = gw.openai()
    for _ in range(2):
        _ = [c async for c in await client.chat.completions.create(**chat_body("filter"), stream=True)]
    assert script["calls"] == 2


# ---------------------------------------------------------------- 3. per-request control, money
async def test_no_cache_skips_lookup_and_refreshes(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                                  http: Any) -> None:
    body = chat_body()
    await post(http, cached_gw, body)
    _, h, _ = await post(http, cached_gw, body, {"Cache-Control": "no-cache"})
    assert h["x-gateway-cache"] == "bypass" and "x-gateway-cache-key" in h
    assert mock_upstream.calls == 2
    _, h, _ = await post(http, cached_gw, body)
    assert h["x-gateway-cache"] == "hit" and int(h["x-gateway-cache-age"]) == 0


async def test_no_store_does_not_write(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                       http: Any) -> None:
    body = chat_body("not for keeping")
    _, h, _ = await post(http, cached_gw, body, {"Cache-Control": "no-store"})
    assert h["x-gateway-cache"] == "miss"
    _, h, _ = await post(http, cached_gw, body)
    assert h["x-gateway-cache"] == "miss" and mock_upstream.calls == 2


async def test_ttl_header_and_max_age(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                      http: Any) -> None:
    body = chat_body("short lived")
    await post(http, cached_gw, body, {"x-gateway-cache-ttl": "1"})
    _, h, _ = await post(http, cached_gw, body)
    assert h["x-gateway-cache"] == "hit"
    await asyncio.sleep(1.05)
    _, h, _ = await post(http, cached_gw, body)
    assert h["x-gateway-cache"] == "miss"
    await asyncio.sleep(1.05)
    _, h, _ = await post(http, cached_gw, body, {"Cache-Control": "max-age=0"})
    assert h["x-gateway-cache"] == "miss"  # the entry is a second old: too old for max-age=0
    _, h, _ = await post(http, cached_gw, body, {"x-gateway-cache-ttl": "0"})
    assert h["x-gateway-cache"] == "hit" and mock_upstream.calls == 3


@pytest.mark.parametrize("headers", [
    {"Cache-Control": "max-age=soon"}, {"Cache-Control": "bogus-directive"}, {"x-gateway-cache-ttl": "later"},
])
async def test_malformed_controls_warn_not_fail(cached_gw: GatewayServer, http: Any,
                                               headers: dict[str, str]) -> None:
    status, h, _ = await post(http, cached_gw, chat_body(), headers)
    assert status == 200 and "ignored" in h["x-gateway-warning"]
    assert h["x-gateway-cache"] == "miss"


async def test_hit_costs_nothing_and_records_the_saving(cached_gw: GatewayServer, http: Any) -> None:
    cached_gw.gateway.prices.cost = flat_price  # type: ignore[method-assign]
    seen = finished(cached_gw)
    saved_before = m.CACHE_SAVED_USD.labels("up", "dev", "")._value.get()
    hits_before = m.CACHE_HITS.labels("up")._value.get()
    _, h1, _ = await post(http, cached_gw, chat_body("pay once"))
    _, h2, _ = await post(http, cached_gw, chat_body("pay once"))
    miss, hit = seen
    assert miss.cost_usd == pytest.approx(2 * 0.001 + 2 * 0.002) and miss.saved_usd == 0
    assert float(h1["x-gateway-cost-usd"]) == pytest.approx(miss.cost_usd)
    assert hit.cache_status == "hit" and hit.cost_usd == 0 and float(h2["x-gateway-cost-usd"]) == 0
    assert hit.saved_usd == pytest.approx(miss.cost_usd)
    assert hit.usage == miss.usage  # the answer's usage, though nothing was spent
    assert m.CACHE_SAVED_USD.labels("up", "dev", "")._value.get() - saved_before == pytest.approx(hit.saved_usd)
    assert m.CACHE_HITS.labels("up")._value.get() - hits_before == 1


async def test_hit_saving_with_the_configured_price_table(gateway_factory: GatewayFactory,
                                                         mock_upstream: MockUpstream, http: Any) -> None:
    cfg = cache_config(mock_upstream.url)
    cfg["pricing"] = {"mock-1": {"input": 1000.0, "output": 2000.0}}
    gw = await gateway_factory(cfg)
    seen = finished(gw)
    await post(http, gw, chat_body("priced by the table"))
    _, h, _ = await post(http, gw, chat_body("priced by the table"))
    miss, hit = seen
    assert miss.cost_usd == pytest.approx((4 * 1000 + 4 * 2000) / 1e6)
    assert hit.cost_usd == 0 and hit.saved_usd == pytest.approx(miss.cost_usd)
    assert float(h["x-gateway-cost-usd"]) == 0


async def test_hits_still_pass_admission(cached_gw: GatewayServer, http: Any) -> None:
    admitted: list[str] = []

    class CountingAdmission:
        async def admit(self, ctx: RequestContext) -> None:
            admitted.append(ctx.request_id)

    cached_gw.gateway.pipeline.admission = CountingAdmission()
    for _ in range(3):
        await post(http, cached_gw, chat_body("rate limited too"))
    assert len(admitted) == 3


async def test_alias_and_key_policies(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                      http: Any) -> None:
    cfg = cache_config(mock_upstream.url)
    cfg["models"]["nocache"] = {"route": [{"provider": "up", "model": "mock-1"}], "cache": {"enabled": False}}
    cfg["models"]["short"] = {"route": [{"provider": "up", "model": "mock-1"}], "cache": {"ttl": "1s"}}
    cfg["keys"].append({"name": "fresh", "key": "sk-fresh", "cache": {"enabled": False}})
    gw = await gateway_factory(cfg)
    for alias, key, expect in [("nocache", DEV_KEY, "bypass"), ("up", "sk-fresh", "bypass"),
                               ("short", DEV_KEY, "hit")]:
        await post(http, gw, {**chat_body(), "model": alias}, key=key)
        status, h, _ = await post(http, gw, {**chat_body(), "model": alias}, key=key)
        assert status == 200 and h["x-gateway-cache"] == expect, alias
        if expect == "bypass":
            assert "x-gateway-cache-key" not in h
    await asyncio.sleep(1.05)
    _, h, _ = await post(http, gw, {**chat_body(), "model": "short"})
    assert h["x-gateway-cache"] == "miss"


async def test_cache_off_hashes_nothing(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                        http: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.cache import stage

    def no_hashing(*_: Any) -> str:
        raise AssertionError("a request the cache is off for must not compute a cache key")

    monkeypatch.setattr(stage, "cache_key", no_hashing)
    cfg = cache_config(mock_upstream.url)
    cfg["cache"] = {"enabled": False}
    gw = await gateway_factory(cfg)
    _, h, _ = await post(http, gw, chat_body(), headers={"Cache-Control": "max-age=5"})
    assert "x-gateway-cache" not in h and "x-gateway-cache-key" not in h


# ---------------------------------------------------------------- 4. never cached
async def test_errors_are_not_cached(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                     http: Any) -> None:
    mock_upstream.configure(error_status=500)
    status, h, _ = await post(http, cached_gw, chat_body("oops"))
    assert status == 502 and h["x-gateway-cache"] == "miss"
    mock_upstream.configure(error_status=None)
    status, h, _ = await post(http, cached_gw, chat_body("oops"))
    assert status == 200 and h["x-gateway-cache"] == "miss"
    assert mock_upstream.calls == 2


async def test_broken_stream_is_not_cached(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                           http: Any) -> None:
    mock_upstream.configure(cut_after=3)
    body = {**chat_body("one two three four five"), "stream": True}
    status, _, raw = await post(http, cached_gw, body)
    assert status == 200 and b'"error"' in raw  # ended with an error event
    mock_upstream.configure(cut_after=None)
    _, h, _ = await post(http, cached_gw, chat_body("one two three four five"))
    assert h["x-gateway-cache"] == "miss"


async def test_length_finish_is_cached(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                       http: Any) -> None:
    body = chat_body("a b c d e", max_tokens=2)
    _, _, first = await post(http, cached_gw, body)
    assert orjson.loads(first)["choices"][0]["finish_reason"] == "length"
    _, h, _ = await post(http, cached_gw, body)
    assert h["x-gateway-cache"] == "hit"


async def test_client_disconnect_mid_stream_is_not_cached(cached_gw: GatewayServer,
                                                         mock_upstream: MockUpstream, http: Any) -> None:
    mock_upstream.configure(tokens_per_s=50)
    body = {**chat_body(" ".join(["w"] * 40)), "stream": True}
    async with http.post(cached_gw.base_url + "/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        await r.content.readline()
    await asyncio.sleep(0.2)
    mock_upstream.configure(tokens_per_s=0)
    _, h, _ = await post(http, cached_gw, {**body, "stream": False})
    assert h["x-gateway-cache"] == "miss"
