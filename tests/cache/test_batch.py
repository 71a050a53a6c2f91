"""POST /v1/gateway/batch: concurrent items through the whole pipeline, results in input order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.core.context import RequestContext
from proxy.core.errors import RATE_LIMIT, GatewayError
from tests.cache.conftest import cache_config, chat_body
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream


async def batch(http: Any, gw: GatewayServer, payload: Any, key: str = DEV_KEY) -> tuple[int, Any]:
    async with http.post(gw.url + "/v1/gateway/batch", json=payload,
                         headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json()


@pytest.fixture(params=["cache-on", "cache-off"])
async def gw(request: Any, gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    cfg = cache_config(mock_upstream.url)
    cfg["batch"] = {"max_items": 5, "max_concurrency": 2}
    if request.param == "cache-off":
        cfg["cache"] = {"enabled": False}
    return await gateway_factory(cfg)


async def test_results_in_input_order_with_own_status(gw: GatewayServer, http: Any) -> None:
    items = [chat_body("first"), {**chat_body("second"), "model": "demo"}, {"model": "nope", "messages": [
        {"role": "user", "content": "x"}]}, {"model": "up"}, chat_body("fifth")]
    status, out = await batch(http, gw, {"requests": items})
    assert status == 200 and out["object"] == "gateway.batch"
    r = out["results"]
    assert [x["status"] for x in r] == [200, 200, 404, 400, 200]
    assert r[0]["body"]["choices"][0]["message"]["content"] == "first"
    assert r[1]["body"]["choices"][0]["message"]["content"] == "second"  # another alias, another provider
    assert r[2]["error"]["code"] == "model_not_found" and "body" not in r[2]
    assert r[3]["error"]["param"] == "messages"
    assert r[4]["body"]["choices"][0]["message"]["content"] == "fifth"
    assert len({x["request_id"] for x in r}) == 5


async def test_identical_items_run_once(gw: GatewayServer, mock_upstream: MockUpstream, http: Any) -> None:
    mock_upstream.configure(latency=0.1)
    seen: list[RequestContext] = []
    gw.gateway.pipeline.meter.on_finish(seen.append)
    gw.gateway.prices.cost = lambda provider, model, usage: 0.5  # type: ignore[method-assign]
    items = [chat_body("same"), chat_body("other"), chat_body("same", user="u2"), chat_body("same")]
    status, out = await batch(http, gw, {"requests": items})
    assert status == 200 and [x["status"] for x in out["results"]] == [200] * 4
    assert mock_upstream.calls == 2
    bodies = [x["body"] for x in out["results"]]
    assert bodies[0] == bodies[2] == bodies[3]
    assert [x.get("coalesced", False) for x in out["results"]] == [False, False, True, True]
    assert len(seen) == 4  # every item metered...
    assert sorted(c.cost_usd for c in seen) == [0, 0, 0.5, 0.5]  # ...and only real calls cost money


async def test_concurrency_cap(gw: GatewayServer, mock_upstream: MockUpstream, http: Any) -> None:
    mock_upstream.configure(latency=0.1)
    items = [chat_body(f"item {i}") for i in range(5)]
    status, _ = await batch(http, gw, {"requests": items, "concurrency": 50})  # clamped to max 2
    assert status == 200 and mock_upstream.state.max_in_flight == 2
    mock_upstream.state.max_in_flight = 0
    status, _ = await batch(http, gw, {"requests": [chat_body(f"again {i}") for i in range(4)],
                                         "concurrency": 1})
    assert status == 200 and mock_upstream.state.max_in_flight == 1


async def test_every_item_passes_admission(gw: GatewayServer, http: Any) -> None:
    calls = 0

    class EveryThirdRefused:
        async def admit(self, ctx: RequestContext) -> None:
            nonlocal calls
            calls += 1
            if calls % 3 == 0:
                raise GatewayError(429, "Rate limit reached.", RATE_LIMIT, code="rate_limit_exceeded",
                                   headers={"Retry-After": "7"})

    gw.gateway.pipeline.admission = EveryThirdRefused()
    status, out = await batch(http, gw, {"requests": [chat_body("q")] * 3, "concurrency": 1})
    assert status == 200 and [x["status"] for x in out["results"]] == [200, 200, 429]
    assert out["results"][2]["error"]["type"] == RATE_LIMIT
    assert out["results"][2]["headers"]["Retry-After"] == "7"


@pytest.mark.parametrize("payload,status,code", [
    ({"requests": [chat_body()] * 6}, 413, "batch_too_large"),
    ({"requests": []}, 400, None),
    ({"requests": "x"}, 400, None),
    ({"requests": [chat_body()], "concurrency": 0}, 400, None),
    ({"requests": [chat_body()], "concurrency": True}, 400, None),
])
async def test_bad_batches(gw: GatewayServer, http: Any, payload: Any, status: int, code: str | None) -> None:
    got, out = await batch(http, gw, payload)
    assert got == status and "error" in out
    if code:
        assert out["error"]["code"] == code


async def test_bad_key_fails_the_whole_batch(gw: GatewayServer, http: Any) -> None:
    status, out = await batch(http, gw, {"requests": [chat_body()]}, key="sk-wrong")
    assert status == 401 and out["error"]["code"] == "invalid_api_key"


async def test_stream_items_and_non_objects_are_refused(gw: GatewayServer, http: Any) -> None:
    _, out = await batch(http, gw, {"requests": [{**chat_body(), "stream": True}, "text", chat_body()]})
    assert [x["status"] for x in out["results"]] == [400, 400, 200]
    assert out["results"][0]["error"]["param"] == "stream"


async def test_batch_items_use_the_cache(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                         http: Any) -> None:
    gw = await gateway_factory(cache_config(mock_upstream.url))
    await batch(http, gw, {"requests": [chat_body("warm")]})
    _, out = await batch(http, gw, {"requests": [chat_body("warm"), chat_body("warm"), chat_body("cold")]})
    assert [x.get("cache") for x in out["results"]] == ["hit", "hit", "miss"]
    assert mock_upstream.calls == 2


async def test_client_gone_cancels_items(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                         http: Any) -> None:
    gw = await gateway_factory(cache_config(mock_upstream.url))
    seen: list[RequestContext] = []
    gw.gateway.pipeline.meter.on_finish(seen.append)
    mock_upstream.configure(latency=1)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(batch(http, gw, {"requests": [chat_body(str(i)) for i in range(3)]}), 0.2)
    await asyncio.sleep(0.1)
    assert len(seen) == 3  # each item still got its ledger row / log line
