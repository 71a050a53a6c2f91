"""Fallback chains (generic, context window, content policy) and the final error when all fail."""

from __future__ import annotations

import uuid

from aiohttp import web
from prometheus_client import REGISTRY

from tests.conftest import GatewayFactory, serve
from tests.resilience.conftest import chat, config, route, spy_logs

LONG = [{"role": "user", "content": " ".join(["word"] * 50)}]


async def test_fallbacks_are_tried_in_order(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    main, first, second = await upstreams(3)
    main.configure(error_status=500)
    first.configure(error_status=503)
    smart = f"smart{uuid.uuid4().hex[:4]}"
    gw = await gateway_factory(config({"a": main.url, "b": first.url, "c": second.url}, {
        smart: {"route": route("a"), "fallbacks": ["f1", "f2"]},
        "f1": {"route": route("b"), "retry": {"attempts": 2, "backoff": "1ms"}},
        "f2": {"route": route("c")},
    }))
    spy = spy_logs(gw)
    r = await chat(gw, smart)
    assert r.status == 200
    assert r.headers["x-gateway-fallback"] == f"{smart}->f2"
    assert r.headers["x-gateway-provider"] == "c"
    assert r.attempts == 3 + 2 + 1  # each alias with its own retry policy
    assert (main.calls, first.calls, second.calls) == (3, 2, 1)
    line = spy.lines[-1]
    assert line["fallback"] == f"{smart}->f2" and len(line["attempts"]) == 6
    assert REGISTRY.get_sample_value("gateway_fallbacks_total",
                                     {"from_alias": smart, "to_alias": "f1", "reason": "error"}) == 1
    assert REGISTRY.get_sample_value("gateway_retries_total",
                                     {"alias": smart, "provider": "a", "reason": "server"}) == 2


async def test_stream_falls_back_before_the_first_byte(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    bad, good = await upstreams(2)
    bad.configure(error_status=502)
    gw = await gateway_factory(config({"a": bad.url, "b": good.url}, {
        "smart": {"route": route("a"), "fallbacks": ["cheap"]}, "cheap": {"route": route("b")}}))
    r = await chat(gw, stream=True)
    assert r.status == 200 and r.headers["x-gateway-fallback"] == "smart->cheap"
    assert r.events[-1] == b"[DONE]"


async def test_context_window_fallback(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    small, big, other = await upstreams(3)
    small.configure(context_window=10)
    gw = await gateway_factory(config({"a": small.url, "b": big.url, "c": other.url}, {
        "smart": {"route": route("a"), "fallbacks": ["cheap"], "context_window_fallbacks": ["long"]},
        "long": {"route": route("b", model="long-1")},
        "cheap": {"route": route("c")},
    }))
    r = await chat(gw, messages=LONG)
    assert r.status == 200 and r.headers["x-gateway-fallback"] == "smart->long"
    assert r.json["model"] == "long-1"
    assert small.calls == 1 and big.calls == 1 and other.calls == 0  # no retry of a too-long prompt
    # the upstream was fine: the breaker does not count it
    assert gw.gateway.plans.breakers.get("a", "mock-1").failures == 0


async def test_context_too_long_without_fallback_is_the_clients_400(gateway_factory: GatewayFactory,  # type: ignore[no-untyped-def]
                                                                    upstreams) -> None:
    small, other = await upstreams(2)
    small.configure(context_window=10)
    gw = await gateway_factory(config({"a": small.url, "c": other.url}, {
        "smart": {"route": route("a"), "fallbacks": ["cheap"]},  # generic fallbacks do not apply
        "cheap": {"route": route("c")}}))
    r = await chat(gw, messages=LONG)
    assert r.status == 400 and r.error["code"] == "context_length_exceeded"
    assert r.error["attempts"][0]["error"] == "context_length"
    assert other.calls == 0


async def test_content_policy_fallback(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    strict, lenient = await upstreams(2)
    strict.configure(fault="content_filter")
    gw = await gateway_factory(config({"a": strict.url, "b": lenient.url}, {
        "smart": {"route": route("a"), "content_policy_fallbacks": ["other"]},
        "other": {"route": route("b")}}))
    r = await chat(gw)
    assert r.status == 200 and r.headers["x-gateway-fallback"] == "smart->other"
    assert strict.calls == 1


async def test_no_available_deployment_is_503_with_retry_after(gateway_factory: GatewayFactory,  # type: ignore[no-untyped-def]
                                                               upstreams) -> None:
    (up,) = await upstreams(1)
    gw = await gateway_factory(config({"a": up.url}, {"smart": {"route": route("a")}},
                                      breaker={"failure_threshold": 1, "reset_timeout": "20s"}))
    gw.gateway.plans.breakers.get("a", "mock-1").open_now()
    r = await chat(gw)
    assert r.status == 503 and r.error["code"] == "no_healthy_upstream"
    assert r.error["type"] == "service_unavailable" and 1 <= int(r.headers["Retry-After"]) <= 20
    assert up.calls == 0


async def test_final_error_lists_attempts_without_secrets(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    async def leaky(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "Incorrect API key provided: sk-proj-abcdef123456. "
                                            "Authorization: Bearer sk-upstream", "code": "boom"}}, status=500)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", leaky)
    srv = await serve(app)
    try:
        (other,) = await upstreams(1)
        other.configure(fault="hang")
        gw = await gateway_factory(config({"a": srv.url, "b": other.url}, {
            "smart": {"route": route("a"), "fallbacks": ["cheap"], "retry": {"attempts": 2, "backoff": "1ms"}},
            "cheap": {"route": route("b"), "retry": {"attempts": 1}, "timeouts": {"first_token": 0.1}}}))
        r = await chat(gw)
    finally:
        await srv.close()
    assert r.status == 504  # the last path timed out
    err = r.error
    assert err["message"].startswith("3 upstream attempts for model 'smart' failed (fallbacks tried: cheap)")
    assert [(a["alias"], a["provider"], a["status"], a["error"]) for a in err["attempts"]] == [
        ("smart", "a", 502, "server"), ("smart", "a", 502, "server"), ("cheap", "b", 504, "timeout")]
    text = r.raw.decode()
    assert "sk-proj-abcdef123456" not in text and "sk-upstream" not in text
    health = gw.gateway.plans.deployments[("a", "mock-1")].last_error
    assert "sk-proj" not in health["message"] and "[redacted]" in health["message"]
