"""Request coalescing through the real server: identical in-flight requests share one upstream call."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from proxy.core.context import RequestContext
from proxy.observability import metrics as m
from tests.cache.conftest import chat_body, post
from tests.conftest import DEV_KEY, GatewayServer, MockUpstream


async def test_100_identical_concurrent_requests_make_one_upstream_call(
        cached_gw: GatewayServer, mock_upstream: MockUpstream, http: Any) -> None:
    mock_upstream.configure(latency=0.5)
    before = m.COALESCED.labels("up")._value.get()
    results = await asyncio.gather(*(post(http, cached_gw, chat_body("together")) for _ in range(100)))
    assert mock_upstream.calls == 1
    assert {s for s, _, _ in results} == {200}
    assert len({b for _, _, b in results}) == 1  # everyone got the same answer
    coalesced = [h for _, h, _ in results if h.get("x-gateway-coalesced") == "true"]
    assert len(coalesced) == 99
    assert m.COALESCED.labels("up")._value.get() - before == 99


async def test_coalesced_waiters_are_not_charged(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                                 http: Any) -> None:
    mock_upstream.configure(latency=0.2)
    gw = cached_gw.gateway
    gw.prices.cost = lambda provider, model, usage: 1.0  # type: ignore[method-assign]
    seen: list[RequestContext] = []
    gw.pipeline.meter.on_finish(seen.append)
    await asyncio.gather(*(post(http, cached_gw, chat_body("split the bill")) for _ in range(3)))
    assert sorted(c.cost_usd for c in seen) == [0.0, 0.0, 1.0]
    assert sorted(c.saved_usd for c in seen) == [0.0, 1.0, 1.0]


async def test_stream_requests_fan_out(cached_gw: GatewayServer, mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(ttft=0.2, tokens_per_s=100)
    client = cached_gw.openai()
    words = " ".join(f"w{i}" for i in range(20))

    async def read() -> tuple[str, Any]:
        text, usage = "", None
        async for c in await client.chat.completions.create(
                **chat_body(words), stream=True, stream_options={"include_usage": True}):
            if c.choices:
                text += c.choices[0].delta.content or ""
            usage = c.usage or usage
        return text, usage

    results = await asyncio.gather(*(read() for _ in range(10)))
    assert mock_upstream.calls == 1
    assert all(t == words for t, _ in results)
    assert all(u is not None and u.completion_tokens == 20 for _, u in results)


async def test_late_stream_joiner_gets_the_whole_stream(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                                        http: Any) -> None:
    mock_upstream.configure(tokens_per_s=40)
    body = {**chat_body(" ".join(["x"] * 20)), "stream": True}
    first = asyncio.ensure_future(post(http, cached_gw, body))
    await asyncio.sleep(0.2)  # a few chunks are out already
    (s1, _, raw1), (s2, h2, raw2) = await asyncio.gather(first, post(http, cached_gw, body))
    assert mock_upstream.calls == 1 and h2["x-gateway-coalesced"] == "true"
    assert s1 == s2 == 200 and raw1 == raw2


async def test_waiter_disconnect_does_not_cancel_the_call(cached_gw: GatewayServer,
                                                          mock_upstream: MockUpstream, http: Any) -> None:
    mock_upstream.configure(latency=0.4)
    body = chat_body("stay with me")

    async def quitter() -> None:
        async with http.post(cached_gw.base_url + "/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {DEV_KEY}"}):
            pass

    # the leader (first in) gives up; the waiter must still get its answer from the same call
    leader = asyncio.ensure_future(asyncio.wait_for(quitter(), 0.1))
    await asyncio.sleep(0.02)
    waiter = asyncio.ensure_future(post(http, cached_gw, body))
    await asyncio.gather(leader, return_exceptions=True)
    status, h, raw = await waiter
    assert status == 200 and orjson.loads(raw)["choices"][0]["message"]["content"] == "stay with me"
    assert h["x-gateway-coalesced"] == "true" and mock_upstream.calls == 1
    _, h, _ = await post(http, cached_gw, body)
    assert h["x-gateway-cache"] == "hit"  # and the leader's call was still stored


async def test_stream_waiter_disconnect_does_not_cancel_the_stream(
        cached_gw: GatewayServer, mock_upstream: MockUpstream, http: Any) -> None:
    mock_upstream.configure(tokens_per_s=40)
    body = {**chat_body(" ".join(["y"] * 16)), "stream": True}

    async def quitter() -> None:
        async with http.post(cached_gw.base_url + "/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
            await r.content.readline()

    stayer = asyncio.ensure_future(post(http, cached_gw, body))
    await asyncio.sleep(0.05)
    await quitter()
    status, _, raw = await stayer
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n") and b'"error"' not in raw
    assert mock_upstream.calls == 1


async def test_everyone_leaving_cancels_the_upstream_call(cached_gw: GatewayServer,
                                                          mock_upstream: MockUpstream, http: Any) -> None:
    mock_upstream.configure(latency=0.5)

    async def quitter() -> None:
        async with http.post(cached_gw.base_url + "/chat/completions", json=chat_body("nobody waits"),
                             headers={"Authorization": f"Bearer {DEV_KEY}"}):
            pass

    await asyncio.gather(*(asyncio.wait_for(quitter(), 0.1) for _ in range(3)), return_exceptions=True)
    await asyncio.sleep(0.05)
    stage = cached_gw.gateway.cache
    assert len(stage.flights) == 0
    assert mock_upstream.state.in_flight == 0  # the upstream request was dropped too


async def test_no_cache_requests_do_not_join(cached_gw: GatewayServer, mock_upstream: MockUpstream,
                                             http: Any) -> None:
    mock_upstream.configure(latency=0.2)
    await asyncio.gather(*(post(http, cached_gw, chat_body("fresh"), {"Cache-Control": "no-cache"})
                           for _ in range(3)))
    assert mock_upstream.calls == 3
