"""Where events come from: budgets, breakers, the metering hook (sampling, a bounded queue), and safe targets."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import aiohttp
import pytest

from proxy.core.context import RequestContext
from proxy.observability import metrics as m
from proxy.webhooks.events import EventProducer
from proxy.webhooks.registry import Event, Registry
from proxy.webhooks.targets import literal_refusal, refused
from tests.admission.conftest import PRICING, with_key
from tests.conftest import GatewayFactory, MockUpstream
from tests.webhooks.conftest import Receiver, hook_config, subscribe


async def test_budget_threshold_and_exceeded_fire_once_per_budget_and_period(
        gateway_factory: GatewayFactory, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    cfg = with_key(hook_config(pricing=PRICING), team="research",
                   budget={"usd": 0.005, "period": "daily", "alert_thresholds": [0.5, 0.8]})
    gw = await gateway_factory(cfg)
    await subscribe(http, gw, receiver, ["budget.threshold", "budget.exceeded"])
    client = gw.openai()
    for _ in range(6):  # each call costs $0.002: past 50%, 80% and the limit, then refused
        try:
            await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "spend"}])
        except Exception:
            break
    await receiver.wait_for(lambda r: len(r.of_type("budget.exceeded")) == 1 and len(r.of_type("budget.threshold")) == 2)
    await gw.gateway.webhooks.producer.flush()
    thresholds = sorted(d.payload["data"]["threshold"] for d in receiver.of_type("budget.threshold"))
    assert thresholds == [0.5, 0.8]
    (exceeded,) = receiver.of_type("budget.exceeded")
    data = exceeded.payload["data"]
    assert data["scope"] == "key" and data["name"] == "dev" and data["limit_usd"] == 0.005
    assert data["spend_usd"] >= 0.005 and data["period"] == "daily"
    assert set(receiver.counts.values()) == {1}


async def test_breaker_opened_and_closed(gateway_factory: GatewayFactory, http: aiohttp.ClientSession,
                                         receiver: Receiver, mock_upstream: MockUpstream) -> None:
    cfg = hook_config(mock_upstream.url, breaker={"failure_threshold": 1, "reset_timeout": "200ms"})
    gw = await gateway_factory(cfg)
    await subscribe(http, gw, receiver, ["breaker.opened", "breaker.closed"])
    mock_upstream.configure(error_status=500, error_rate=1.0)
    client = gw.openai()
    with pytest.raises(Exception):  # noqa: B017 - any SDK error: the upstream fails
        await client.chat.completions.create(model="up", messages=[{"role": "user", "content": "x"}])
    await receiver.wait_for(lambda r: len(r.of_type("breaker.opened")) == 1)
    mock_upstream.configure(error_status=None, error_rate=0.0)
    await asyncio.sleep(0.3)
    await client.chat.completions.create(model="up", messages=[{"role": "user", "content": "x"}])
    await receiver.wait_for(lambda r: len(r.of_type("breaker.closed")) == 1)
    opened = receiver.of_type("breaker.opened")[0].payload["data"]
    assert opened["deployment"] == "up/mock-1" and opened["provider"] == "up" and opened["model"] == "mock-1"
    assert opened["last_error"] and "sk-upstream" not in str(receiver.got[0].body)


def _ctx(status: int = 200) -> RequestContext:
    from proxy.auth.authenticator import KeyInfo

    ctx = RequestContext("chat", "req-1", "127.0.0.1")
    ctx.key = KeyInfo(id="cfg:dev", name="dev")
    ctx.status = status
    return ctx


def _producer(events: list[str], **kw: Any) -> EventProducer:
    reg = Registry()
    reg.load([{"id": "wh_1", "url": "https://example.com", "events": events, "active": True, "secret": "whsec_x"}], {})
    return EventProducer(store=None, registry=reg, **kw)  # type: ignore[arg-type]  # nothing is written here


def test_invocation_events_only_while_a_subscription_asks_for_them() -> None:
    p = _producer(["key.created"])
    p.on_finish(_ctx())
    assert p.depth == 0
    p = _producer(["invocation.failed"])
    p.on_finish(_ctx(200))
    assert p.depth == 0
    p.on_finish(_ctx(502))
    assert p.depth == 1


def test_sampling_and_a_full_queue_drops_and_counts() -> None:
    p = _producer(["invocation.completed"], sample_rate=0.25)
    for _ in range(2000):
        p.on_finish(_ctx())
    assert 300 < p.depth < 700
    p = _producer(["invocation.completed"], queue_max=3)
    before = m.WEBHOOK_DROPPED._value.get()
    for _ in range(5):
        p.on_finish(_ctx())
    assert p.depth == 3 and p.dropped == 2 and m.WEBHOOK_DROPPED._value.get() - before == 2


def test_filters() -> None:
    reg = Registry()
    reg.load([{"id": "a", "url": "u", "events": ["budget.threshold", "breaker.opened"], "active": True,
               "secret": "s", "filter": {"teams": ["research"]}},
              {"id": "b", "url": "u", "events": ["budget.threshold"], "active": True, "secret": "s",
               "filter": {"keys": ["dev"]}},
              {"id": "c", "url": "u", "events": ["budget.threshold"], "active": False, "secret": "s"}], {})
    ids = lambda e: sorted(s.id for s in reg.matching(e))  # noqa: E731
    assert ids(Event("budget.threshold", {}, 0, ("key_1", "dev"), "research")) == ["a", "b"]
    assert ids(Event("budget.threshold", {}, 0, ("key_2", "other"), "research")) == ["a"]
    assert ids(Event("budget.threshold", {}, 0, (), "sales")) == []
    assert ids(Event("breaker.opened", {}, 0)) == ["a"]  # about no key or team: every filter lets it through


@pytest.mark.parametrize(("addr", "ok"), [
    ("127.0.0.1", False), ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("::1", False), ("fe80::1", False),
    ("fc00::1", False), ("::ffff:127.0.0.1", False), ("224.0.0.1", False),
    ("93.184.215.14", True), ("2606:4700::1111", True),
])
def test_refused_addresses(addr: str, ok: bool) -> None:
    assert (refused(ipaddress.ip_address(addr)) is None) is ok
    host = f"[{addr}]" if ":" in addr else addr
    assert (literal_refusal(f"http://{host}:8080/x") is None) is ok
