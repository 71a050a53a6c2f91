"""Retries: exponential backoff with full jitter, Retry-After, attempts, the per-alias deadline, and
the errors that must never be retried."""

from __future__ import annotations

import random

import pytest

from proxy.core.errors import UpstreamError, upstream_error_from_status
from proxy.resilience.retry import CLIENT, CONTENT, CONTEXT, RETRY, SKIP, backoff_delay, classify, retry_delay
from tests.conftest import GatewayFactory
from tests.resilience.conftest import breaker, chat, config, route


def test_full_jitter_bounds() -> None:
    random.seed(7)
    for n in range(8):
        ceiling = min(1.0, 0.1 * 2**n)
        draws = [backoff_delay(n, 0.1, 1.0) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8 and min(draws) < ceiling * 0.2  # spread over the whole range
    assert backoff_delay(100, 0.1, 5.0) <= 5.0  # huge retry numbers do not overflow
    assert backoff_delay(3, 0.0, 5.0) == 0.0


def test_retry_after_wins_when_longer() -> None:
    err = upstream_error_from_status(429, "slow down", retry_after=2.5)
    assert retry_delay(0, 0.01, 0.02, err) == 2.5
    assert retry_delay(0, 0.01, 0.02, None) <= 0.01


@pytest.mark.parametrize(("status", "outcome"), [
    (500, RETRY), (502, RETRY), (503, RETRY), (504, RETRY), (429, RETRY), (408, RETRY),
    (400, CLIENT), (422, CLIENT), (413, CLIENT), (401, SKIP), (403, SKIP), (404, SKIP),
])
def test_classification(status: int, outcome: int) -> None:
    assert classify(upstream_error_from_status(status, "x")) == outcome


def test_classification_of_request_faults() -> None:
    ctx = UpstreamError(400, "too long", kind="context_length", retryable=False)
    flt = UpstreamError(400, "filtered", kind="content_filter", retryable=False)
    odd = UpstreamError(502, "?", kind="something_new", retryable=True)
    assert (classify(ctx), classify(flt), classify(odd)) == (CONTEXT, CONTENT, RETRY)


async def test_transient_failures_are_retried_on_the_same_deployment(gateway_factory: GatewayFactory,
                                                                     upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(error_status=502, fail_first=2)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {"route": route("a")}}))
    r = await chat(gw)
    assert r.status == 200 and up.calls == 3 and r.attempts == 3
    assert "x-gateway-fallback" not in r.headers
    assert breaker(gw, "a") == "closed"  # 2 failures < threshold 3, and the success reset the count
    assert gw.gateway.plans.breakers.get("a", "mock-1").failures == 0


async def test_attempts_one_means_no_retry(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(error_status=500, fail_first=1)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {"route": route("a"), "retry": {"attempts": 1}}}))
    r = await chat(gw)
    assert r.status == 502 and up.calls == 1 and r.attempts == 1


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
async def test_request_errors_are_never_retried_nor_fall_back(gateway_factory: GatewayFactory, upstreams,  # type: ignore[no-untyped-def]
                                                              status: int) -> None:
    bad, good = await upstreams(2)
    bad.configure(error_status=status)
    gw = await gateway_factory(config({"a": bad.url, "b": good.url}, {
        "smart": {"route": route("a"), "fallbacks": ["cheap"]},
        "cheap": {"route": route("b")},
    }))
    r = await chat(gw)
    if status == 404:  # the deployment's model does not exist upstream: a deployment fault, try elsewhere
        assert r.status == 200 and r.headers["x-gateway-fallback"] == "smart->cheap" and bad.calls == 1
        return
    assert r.status == status and bad.calls == 1 and good.calls == 0
    assert breaker(gw, "a") == "closed"
    assert gw.gateway.plans.breakers.get("a", "mock-1").failures == 0  # the upstream is healthy


async def test_retry_after_is_honoured(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(error_status=429, retry_after=0.3, fail_first=1)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {"route": route("a")}}))
    r = await chat(gw)
    assert r.status == 200 and up.calls == 2
    assert r.elapsed >= 0.3  # waited for Retry-After, not the 5 ms backoff


async def test_retry_after_above_cap_is_not_waited_for(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    bad, good = await upstreams(2)
    bad.configure(error_status=429, retry_after=60)
    gw = await gateway_factory(config({"a": bad.url, "b": good.url}, {
        "smart": {"route": route("a"), "fallbacks": ["cheap"]},  # retry_after_max: 1s
        "cheap": {"route": route("b")},
    }))
    r = await chat(gw)
    assert r.status == 200 and r.headers["x-gateway-fallback"] == "smart->cheap"
    assert bad.calls == 1 and r.elapsed < 1  # no 60 s wait, no pointless retry of `a`
    # without a fallback the client gets the 429 with a Retry-After to honour itself
    gw2 = await gateway_factory(config({"a": bad.url}, {"smart": {"route": route("a")}}))
    r2 = await chat(gw2)
    assert r2.status == 429 and r2.headers["Retry-After"] == "60"


async def test_failover_to_another_deployment_needs_no_backoff(gateway_factory: GatewayFactory,
                                                               upstreams) -> None:  # type: ignore[no-untyped-def]
    bad, good = await upstreams(2)
    bad.configure(error_status=500)
    gw = await gateway_factory(config({"a": bad.url, "b": good.url}, {
        "smart": {"route": route("a", "b"), "retry": {"attempts": 3, "backoff": "5s", "backoff_max": "5s"}},
    }))
    r = await chat(gw)
    assert r.status == 200 and r.headers["x-gateway-provider"] == "b" and r.attempts == 2
    assert r.elapsed < 1  # moved to b at once; the 5 s backoff is only for retrying a used deployment


async def test_total_deadline_bounds_all_attempts(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    up.configure(fault="hang")
    gw = await gateway_factory(config({"a": up.url}, {"smart": {
        "route": route("a"), "retry": {"attempts": 10, "backoff": "1ms"},
        "timeouts": {"first_token": 0.2, "total": 0.5}}}))
    r = await chat(gw)
    assert r.status == 504 and r.error["code"] == "upstream_timeout"
    assert r.elapsed < 1.0 and 2 <= up.calls <= 3  # 0.2 s tries until the 0.5 s deadline, not 10 of them


async def test_embeddings_are_retried_too(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    import aiohttp

    from tests.conftest import auth

    (up,) = await upstreams(1)
    up.configure(error_status=503, fail_first=1)
    gw = await gateway_factory(config({"a": up.url}, {"emb": {"route": route("a", model="emb-1")}}))
    async with aiohttp.ClientSession() as s, s.post(gw.base_url + "/embeddings", headers=auth(),
                                                    json={"model": "emb", "input": "hi"}) as r:
        assert r.status == 200 and r.headers["x-gateway-attempts"] == "2"
    assert up.calls == 2
