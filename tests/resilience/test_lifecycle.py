"""Clients that go away, in-process providers, and the deadline cutting a backoff short: in-flight
counts and half-open probes must always be given back."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from proxy.core.errors import GatewayError
from tests.conftest import GatewayFactory, auth
from tests.resilience.conftest import chat, config, route


async def test_client_gone_mid_stream_releases_the_slot(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(tokens_per_s=20, reply="lorem", reply_tokens=40)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {"route": route("a"),
                                                                "timeouts": {"idle": 2, "total": 10}}}))
    body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with aiohttp.ClientSession() as s, s.post(gw.base_url + "/chat/completions", json=body,
                                                    headers=auth()) as r:
        await r.content.readline()
    st = gw.gateway.plans.deployments[("a", "mock-1")]
    for _ in range(50):
        if st.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert st.in_flight == 0 and st.breaker.failures == 0  # the client left: not the upstream's fault


async def test_client_gone_during_a_call_frees_the_probe(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(latency=0.3)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {"route": route("a")}},
                                      breaker={"failure_threshold": 1, "reset_timeout": "50ms"}))
    b = gw.gateway.plans.breakers.get("a", "mock-1")
    b.open_now()
    await asyncio.sleep(0.06)
    with pytest.raises(asyncio.TimeoutError):
        await chat(gw, timeout=0.1)  # this request carries the half-open probe, then hangs up
    st = gw.gateway.plans.deployments[("a", "mock-1")]
    for _ in range(50):
        if st.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert st.in_flight == 0 and b.state == "half-open"
    up.configure(latency=0)
    r = await chat(gw)  # the probe slot is free again
    assert r.status == 200 and b.state == "closed"


async def test_in_process_provider_is_held_to_the_deadline(gateway_factory: GatewayFactory) -> None:
    cfg = config({}, {"slow": {"route": [{"provider": "local", "model": "m"}],
                               "retry": {"attempts": 1}, "timeouts": {"total": 0.1}}})
    cfg["providers"]["local"] = {"type": "mock", "mock": {"latency": 1.0}}
    gw = await gateway_factory(cfg)
    r = await chat(gw, "slow")
    assert r.status == 504 and r.error["code"] == "upstream_timeout" and r.elapsed < 0.8


async def test_backoff_longer_than_the_deadline_stops_retrying(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(error_status=503, retry_after=0.5)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {
        "route": route("a"), "retry": {"attempts": 5, "retry_after_max": "10s"}, "timeouts": {"total": 0.3}}}))
    r = await chat(gw)
    assert r.status == 503 and up.calls == 1 and r.elapsed < 0.3  # no point sleeping past the deadline


async def test_executor_api(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    from proxy.core.context import RequestContext

    (up,) = await upstreams(1)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {"route": route("a"),
                                                                "timeouts": {"first_token": 0.4}}}))
    ex = gw.gateway.pipeline.executor
    assert ex.options("smart", "a").first_token_timeout == 0.4
    with pytest.raises(KeyError):
        ex.options("smart", "zzz")
    ctx = RequestContext.new("chat", None, "")
    ctx.alias = "missing"
    with pytest.raises(GatewayError) as err:
        await ex.complete(ctx)
    assert err.value.status == 404
    assert gw.gateway.plans.candidates("smart")[0].provider == "a"
