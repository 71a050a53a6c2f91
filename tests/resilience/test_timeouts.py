"""Per-alias timeouts (connect, first token, idle, total); a timed-out attempt counts as a failure
for retry, breaker and fallback."""

from __future__ import annotations

import pytest

from proxy.config import ConfigError, parse_config
from proxy.resilience.plans import Plans, merged_timeouts
from tests.conftest import GatewayFactory
from tests.resilience.conftest import breaker, chat, config, route


def test_alias_timeouts_override_only_the_fields_they_set() -> None:
    cfg = parse_config({
        "providers": {"p": {"type": "mock", "timeout": {"connect": 2, "first_token": 9, "idle": 8, "total": 70}}},
        "models": {"a": {"route": [{"provider": "p", "model": "x"}], "timeouts": {"first_token": "300ms"}},
                   "b": {"route": [{"provider": "p", "model": "x"}]}},
    }, env={})
    t = merged_timeouts(cfg.models["a"], cfg.providers["p"])
    assert (t.connect, t.first_token, t.idle, t.total) == (2, 0.3, 8, 70)
    router = Plans(cfg)
    a, b = router.plans["a"], router.plans["b"]
    assert a.slots[0].opts.first_token_timeout == 0.3 and a.deadline == 70
    assert b.slots[0].opts.first_token_timeout == 9 and b.deadline == 70


async def test_total_timeout_counts_for_retry_breaker_and_fallback(gateway_factory: GatewayFactory,  # type: ignore[no-untyped-def]
                                                                   upstreams) -> None:
    slow, good = await upstreams(2)
    slow.configure(trickle=0.05)  # each piece within the idle timeout, the whole body far too slow
    gw = await gateway_factory(config({"a": slow.url, "b": good.url}, {
        "smart": {"route": route("a"), "fallbacks": ["cheap"],
                  "retry": {"attempts": 2, "backoff": "1ms"}, "timeouts": {"idle": 0.3, "total": 0.25}},
        "cheap": {"route": route("b")}}, breaker={"failure_threshold": 2}))
    r = await chat(gw)
    assert r.status == 200 and r.headers["x-gateway-fallback"] == "smart->cheap"
    assert slow.calls == 1 or slow.calls == 2  # the alias deadline (0.25 s) may leave room for one retry
    assert r.elapsed < 1.0
    st = gw.gateway.plans.deployments[("a", "mock-1")]
    assert st.last_error["type"] == "timeout"
    await chat(gw)
    assert breaker(gw, "a") == "open"


async def test_first_token_timeout_for_streams(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(ttft=0.5)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {
        "route": route("a"), "retry": {"attempts": 2, "backoff": "1ms"}, "timeouts": {"first_token": 0.1}}}))
    r = await chat(gw, stream=True)
    assert r.status == 504 and r.error["code"] == "upstream_timeout" and up.calls == 2
    assert r.elapsed < 0.5


async def test_connect_timeout_is_a_retryable_failure(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    # a TEST-NET address would leave connects hanging, but only 127.0.0.1 is allowed here: a refused
    # connect takes the same path (connect error -> retry -> breaker -> fallback)
    from tests.resilience.conftest import dead_url

    (good,) = await upstreams(1)
    gw = await gateway_factory(config({"a": dead_url(), "b": good.url}, {
        "smart": {"route": route("a", "b"), "timeouts": {"connect": 0.05}}}))
    r = await chat(gw)
    assert r.status == 200 and r.headers["x-gateway-provider"] == "b" and r.attempts == 2


def test_a_plain_duration_is_the_total_deadline() -> None:
    cfg = parse_config({
        "providers": {"p": {"type": "mock", "timeout": "30s"}, "q": {"type": "mock", "timeout": 45}},
        "models": {"a": {"route": [{"provider": "p", "model": "x"}], "timeout": "5s"},
                   "b": {"route": [{"provider": "q", "model": "x"}], "timeouts": 2.5},
                   "c": {"route": [{"provider": "p", "model": "x"}]}},
    }, env={})
    assert cfg.providers["p"].timeout.total == 30 and cfg.providers["q"].timeout.total == 45
    assert cfg.providers["p"].timeout.connect == 10  # the other fields keep their defaults
    t = merged_timeouts(cfg.models["a"], cfg.providers["p"])
    assert (t.connect, t.first_token, t.idle, t.total) == (10, 120, 120, 5)
    plans = Plans(cfg).plans
    assert (plans["a"].deadline, plans["b"].deadline, plans["c"].deadline) == (5, 2.5, 30)


@pytest.mark.parametrize(("models", "needle"), [
    ({"timeout": "soon"}, "models.a.timeout.total: Value error, invalid duration 'soon'"),
    ({"timeouts": True}, "models.a.timeouts.total"),
    ({"timeout": "1s", "timeouts": "2s"}, "give one of `timeout` or `timeouts`"),
])
def test_bad_plain_timeouts_are_named(models: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"providers": {"p": {"type": "mock"}},
                      "models": {"a": {"route": [{"provider": "p", "model": "x"}], **models}}}, env={})
    assert needle in str(err.value)


async def test_plain_timeout_bounds_the_call(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(latency=2)
    cfg = config({"a": up.url}, {"smart": {"route": route("a"), "retry": {"attempts": 1}}})
    cfg["providers"]["a"]["timeout"] = "200ms"
    gw = await gateway_factory(cfg)
    r = await chat(gw)
    assert r.status == 504 and r.error["code"] == "upstream_timeout" and r.elapsed < 1.5
    cfg["providers"]["a"]["timeout"] = 10
    cfg["models"]["smart"]["timeout"] = 0.2
    gw = await gateway_factory(cfg)
    r = await chat(gw)
    assert r.status == 504 and r.error["code"] == "upstream_timeout" and r.elapsed < 1.5
