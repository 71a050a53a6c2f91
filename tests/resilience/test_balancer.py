"""Load-balancing strategies and per-deployment rpm/tpm capacity."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from proxy.config import parse_config
from proxy.resilience.plans import Plans
from tests.conftest import GatewayFactory
from tests.resilience.conftest import chat, config, route


def plan_for(strategy: str, weights: list[float]):  # type: ignore[no-untyped-def]
    cfg = parse_config({
        "providers": {f"p{i}": {"type": "mock"} for i in range(len(weights))},
        "models": {"m": {"strategy": strategy,
                         "route": [{"provider": f"p{i}", "model": "x", "weight": w} for i, w in enumerate(weights)]}},
    }, env={})
    return Plans(cfg).plans["m"]


def test_weighted_follows_weights() -> None:
    random.seed(3)
    plan = plan_for("weighted", [3, 1, 0.5])
    picks = Counter(plan.start(0.0) for _ in range(9000))
    assert abs(picks[0] / 9000 - 3 / 4.5) < 0.03
    assert abs(picks[1] / 9000 - 1 / 4.5) < 0.03
    assert abs(picks[2] / 9000 - 0.5 / 4.5) < 0.03


def test_priority_always_starts_first() -> None:
    plan = plan_for("priority", [1, 5])
    assert {plan.start(0.0) for _ in range(50)} == {0}


def test_least_busy_and_latency_pick_the_best() -> None:
    plan = plan_for("least-busy", [1, 1, 1])
    for s, busy in zip(plan.slots, (4, 1, 3), strict=True):
        s.state.in_flight = busy
    assert {plan.start(0.0) for _ in range(10)} == {1}
    plan = plan_for("latency", [1, 1, 1])
    for s, lat in zip(plan.slots, (0.3, 0.2, 0.9), strict=True):
        s.state.observe(lat, 100.0)
    assert {plan.start(100.0) for _ in range(10)} == {1}
    plan.slots[2].state.ewma_at = -100.0  # stale estimate: explored again
    assert plan.start(100.0) == 2


def test_p95_of_recent_samples() -> None:
    plan = plan_for("priority", [1])
    st = plan.slots[0].state
    assert st.p95(10.0) is None  # too few samples
    for i in range(1, 101):
        st.observe(i / 1000, 10.0)
    assert st.p95(10.5) == 0.095
    assert st.p95(200.0) is None  # all older than the window


async def test_least_busy_spreads_concurrent_requests(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    a, b = await upstreams(2)
    for u in (a, b):
        u.configure(latency=0.1)
    gw = await gateway_factory(config({"a": a.url, "b": b.url},
                                      {"smart": {"route": route("a", "b"), "strategy": "least-busy"}}))
    replies = await asyncio.gather(*(chat(gw) for _ in range(6)))
    assert all(r.status == 200 for r in replies)
    assert a.calls == 3 and b.calls == 3


async def test_latency_prefers_the_fast_deployment(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    slow, fast = await upstreams(2)
    slow.configure(latency=0.05)
    gw = await gateway_factory(config({"slow": slow.url, "fast": fast.url},
                                      {"smart": {"route": route("slow", "fast"), "strategy": "latency"}}))
    for _ in range(12):
        assert (await chat(gw)).status == 200
    assert slow.calls <= 2 and fast.calls >= 10  # explored once, then avoided


async def test_weighted_through_the_server(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    random.seed(11)
    a, b = await upstreams(2)
    gw = await gateway_factory(config({"a": a.url, "b": b.url}, {"smart": {
        "route": [{"provider": "a", "model": "mock-1", "weight": 4}, {"provider": "b", "model": "mock-1", "weight": 1}],
        "strategy": "weighted"}}))
    for _ in range(100):
        await chat(gw)
    assert 65 <= a.calls <= 95 and a.calls + b.calls == 100


async def test_deployment_at_rpm_capacity_is_skipped(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    a, b = await upstreams(2)
    gw = await gateway_factory(config({"a": a.url, "b": b.url}, {"smart": {
        "route": [{"provider": "a", "model": "mock-1", "rpm": 2}, {"provider": "b", "model": "mock-1"}]}}))
    providers = [(await chat(gw)).headers["x-gateway-provider"] for _ in range(4)]
    assert providers == ["a", "a", "b", "b"]


async def test_tpm_capacity_and_no_capacity_anywhere(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (a,) = await upstreams(1)
    gw = await gateway_factory(config({"a": a.url}, {"smart": {
        "route": [{"provider": "a", "model": "mock-1", "tpm": 60}]}}))
    long = [{"role": "user", "content": "word " * 40}]  # ~60 estimated tokens
    assert (await chat(gw, messages=long)).status == 200
    r = await chat(gw, messages=long)
    assert r.status == 503 and r.error["code"] == "no_healthy_upstream" and r.error["attempts"] == []
    assert a.calls == 1
