"""Fault matrix through the real server: a mock upstream failing in every way behind alias `smart`,
a healthy one behind its fallback `cheap`. For each fault: what the client sees, how many upstream
attempts were made, the breaker state after, and whether the fallback served."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import GatewayFactory
from tests.resilience.conftest import breaker, chat, config, dead_url, route

TIMEOUTS = {"first_token": 0.2, "idle": 0.15, "total": 2}

# name -> (mock behaviour, stream?, error kind the gateway records)
FAULTS: dict[str, tuple[dict[str, Any], bool, str]] = {
    "500": ({"error_status": 500}, False, "server"),
    "502": ({"error_status": 502}, False, "server"),
    "503": ({"error_status": 503}, False, "overloaded"),
    "504": ({"error_status": 504}, False, "server"),
    "429-retry-after": ({"error_status": 429, "retry_after": 0.05}, False, "rate_limit"),
    "dropped-connection": ({"fault": "drop"}, False, "connect"),
    "hang-before-headers": ({"fault": "hang"}, False, "timeout"),
    "hang-before-headers-stream": ({"fault": "hang"}, True, "timeout"),
    "slow-first-token-stream": ({"ttft": 1.0}, True, "timeout"),
    "slow-trickle-body": ({"trickle": 0.4}, False, "timeout"),
    "malformed-json": ({"fault": "malformed_json"}, False, "bad_response"),
    "malformed-json-stream": ({"fault": "malformed_json"}, True, "bad_response"),
    "wrong-content-type": ({"fault": "wrong_content_type"}, False, "bad_response"),
    "wrong-content-type-stream": ({"fault": "wrong_content_type"}, True, "bad_response"),
    "stream-cut-before-first-chunk": ({"cut_after": 0}, True, "stream_cut"),
}


@pytest.fixture
async def pair(gateway_factory: GatewayFactory, upstreams):  # type: ignore[no-untyped-def]
    bad, good = await upstreams(2)
    cfg = config({"a": bad.url, "b": good.url}, {
        "smart": {"route": route("a"), "fallbacks": ["cheap"], "timeouts": TIMEOUTS},
        "cheap": {"route": route("b")},
    })
    return await gateway_factory(cfg), bad, good


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_is_retried_then_falls_back(pair, fault: str) -> None:  # type: ignore[no-untyped-def]
    gw, bad, good = pair
    behaviour, stream, kind = FAULTS[fault]
    bad.configure(**behaviour)
    r = await chat(gw, stream=stream)
    # the client sees a normal answer, served by the fallback
    assert r.status == 200, r.raw
    assert r.headers["x-gateway-fallback"] == "smart->cheap"
    assert r.headers["x-gateway-provider"] == "b"
    if stream:
        assert r.events[-1] == b"[DONE]" and b'"error"' not in r.raw
    else:
        assert r.json["choices"][0]["message"]["content"] == "ping pong"
    # three tries of smart (attempts: 3), then one of cheap
    assert bad.calls == 3 and good.calls == 1
    assert r.attempts == 4
    # three consecutive failures = failure_threshold: the breaker is open now
    assert breaker(gw, "a") == "open"
    router = gw.gateway.plans
    assert router.deployments[("a", "mock-1")].last_error["type"] == kind
    # while it is open, smart goes straight to the fallback without touching the bad upstream
    r2 = await chat(gw, stream=stream)
    assert r2.status == 200 and r2.attempts == 1 and bad.calls == 3


async def test_refused_connection(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (good,) = await upstreams(1)
    gw = await gateway_factory(config({"a": dead_url(), "b": good.url}, {
        "smart": {"route": route("a"), "fallbacks": ["cheap"]},
        "cheap": {"route": route("b")},
    }))
    r = await chat(gw)
    assert r.status == 200 and r.headers["x-gateway-fallback"] == "smart->cheap"
    assert r.attempts == 4 and good.calls == 1
    assert breaker(gw, "a") == "open"
    assert gw.gateway.plans.deployments[("a", "mock-1")].last_error["type"] == "connect"


# what the client sees when there is no fallback: one OpenAI-format error listing the attempts
NO_FALLBACK = [
    ({"error_status": 500}, False, 502, "upstream_error"),
    ({"error_status": 503}, False, 503, "upstream_overloaded"),
    ({"error_status": 429, "retry_after": 0.01}, False, 429, "rate_limit_exceeded"),
    ({"fault": "hang"}, False, 504, "upstream_timeout"),
    ({"fault": "hang"}, True, 504, "upstream_timeout"),
    ({"fault": "drop"}, False, 502, "upstream_connect_error"),
    ({"fault": "malformed_json"}, False, 502, "upstream_bad_response"),
    ({"fault": "wrong_content_type"}, True, 502, "upstream_bad_response"),
]


@pytest.mark.parametrize(("behaviour", "stream", "status", "code"), NO_FALLBACK)
async def test_every_path_failed(gateway_factory: GatewayFactory, upstreams, behaviour: dict[str, Any],  # type: ignore[no-untyped-def]
                                 stream: bool, status: int, code: str) -> None:
    bad1, bad2 = await upstreams(2)
    for u in (bad1, bad2):
        u.configure(**behaviour)
    gw = await gateway_factory(config({"a": bad1.url, "b": bad2.url}, {
        "smart": {"route": route("a", "b"), "timeouts": TIMEOUTS, "retry": {"attempts": 4, "backoff": "1ms"}},
    }, breaker={"failure_threshold": 10}))
    r = await chat(gw, stream=stream)
    assert r.status == status
    assert r.headers["content-type"].startswith("application/json")
    err = r.error
    assert err["code"] == code
    assert "4 upstream attempts for model 'smart' failed" in err["message"]
    listing = err["attempts"]
    assert [(a["provider"], a["status"]) for a in listing] == [("a", status), ("b", status)] * 2
    assert all(a["error"] != "ok" and a["alias"] == "smart" for a in listing)
    assert bad1.calls == 2 and bad2.calls == 2
    assert "sk-upstream" not in r.raw.decode()


async def test_stream_cut_after_first_byte_is_not_retried(pair) -> None:  # type: ignore[no-untyped-def]
    gw, bad, good = pair
    bad.configure(cut_after=2)
    r = await chat(gw, stream=True, messages=[{"role": "user", "content": "a b c d e f"}])
    assert r.status == 200  # headers were sent with the first chunk
    assert len(r.events) == 3 and orjson.loads(r.events[-1])["error"]["code"] == "upstream_stream_error"
    assert bad.calls == 1 and good.calls == 0 and "x-gateway-fallback" not in r.headers
    st = gw.gateway.plans.deployments[("a", "mock-1")]
    assert st.breaker.failures == 1 and st.in_flight == 0  # counted against the breaker, slot released
    assert st.last_error["type"] == "stream_cut"


async def test_stream_slow_trickle_mid_way_hits_idle_timeout(pair) -> None:  # type: ignore[no-untyped-def]
    gw, bad, good = pair
    bad.configure(tokens_per_s=4)  # 250 ms between chunks > idle 150 ms
    r = await chat(gw, stream=True, messages=[{"role": "user", "content": "a b c"}])
    assert r.status == 200 and b'"upstream_timeout"' in r.events[-1]
    assert bad.calls == 1 and good.calls == 0
    assert gw.gateway.plans.deployments[("a", "mock-1")].breaker.failures == 1
