"""Quotas through the real HTTP server with in-process storage: rpm, tpm, rpd, per provider / alias /
team, per client IP, OpenAI's headers and 429 format, streams charged at the end, cache hits."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import openai
import pytest

from proxy.config import load_config
from tests.admission.conftest import chat, metric_value, post_chat, quota_config, wait_for, with_key
from tests.conftest import DEV_KEY, GatewayFactory, MockUpstream


async def test_rpm_openai_format_and_headers(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(with_key(quota_config(), limits={"rpm": 3}))
    client = gw.openai()
    remaining = []
    for _ in range(3):
        raw = await client.chat.completions.with_raw_response.create(
            model="demo", messages=[{"role": "user", "content": "hi"}])
        h = raw.headers
        assert h["x-ratelimit-limit-requests"] == "3"
        assert h["x-ratelimit-reset-requests"].endswith(("s", "ms"))
        remaining.append(int(h["x-ratelimit-remaining-requests"]))
        assert "x-ratelimit-limit-tokens" not in h  # no token limit configured
    assert remaining == [2, 1, 0]
    before = metric_value("gateway_rate_limited_total", reason="rpm", key="dev", team="")
    with pytest.raises(openai.RateLimitError) as exc:
        await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    err = exc.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert err.body["type"] == "requests" and "requests per minute" in err.body["message"]
    assert 1 <= int(err.response.headers["Retry-After"]) <= 60
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert metric_value("gateway_rate_limited_total", reason="rpm", key="dev", team="") == before + 1


async def test_unlimited_key_gets_no_rate_headers_but_cost(gateway_factory: GatewayFactory,
                                                            http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config())
    status, h, _ = await post_chat(http, gw)
    assert status == 200
    assert not any(k.lower().startswith("x-ratelimit") for k in h)
    assert h["x-gateway-cost-usd"] == "0.00000000"  # mock-1 has no price


async def test_tpm_estimate_before_and_usage_after(gateway_factory: GatewayFactory,
                                                   http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(), limits={"tpm": 100})
    cfg["providers"]["mock"]["mock"] = {"reply": "lorem", "reply_tokens": 20}
    gw = await gateway_factory(cfg)
    # estimate (prompt/4 + max_tokens) above the limit: refused before any upstream call
    status, h, body = await post_chat(http, gw, chat(max_tokens=500))
    assert status == 429 and body["error"]["type"] == "tokens"
    assert "Request too large" in body["error"]["message"]
    # a call reserves its estimate, then the reported usage replaces it
    status, h, body = await post_chat(http, gw, chat(max_tokens=30))
    assert status == 200
    used = body["usage"]["total_tokens"]
    assert h["x-ratelimit-limit-tokens"] == "100"
    estimate_left = int(h["x-ratelimit-remaining-tokens"])
    admission = gw.gateway.admission
    key = dev_key(gw)
    await wait_for(lambda: _tpm_left(admission, key, 100 - used))
    assert estimate_left <= 100 - used  # the estimate was at least the real usage here
    # keep calling until the window is full: refused with tokens 429, never above the limit
    statuses = []
    for _ in range(10):
        s, _, _ = await post_chat(http, gw, chat(max_tokens=30))
        statuses.append(s)
        if s == 429:
            break
    assert statuses[-1] == 429


def dev_key(gw):  # type: ignore[no-untyped-def]
    return next(iter(gw.gateway.pipeline.auth._by_hash.values()))


async def _tpm_left(admission, key, expected: int) -> bool:  # type: ignore[no-untyped-def]
    rows = await admission.limit_status(key)
    return any(r["metric"] == "tpm" and r["remaining"] == expected for r in rows)


async def test_stream_is_charged_when_it_finishes(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(with_key(quota_config(), limits={"tpm": 1000, "rpm": 100}))
    client = gw.openai()
    stream = await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True, stream_options={"include_usage": True})
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None and usage.total_tokens > 0
    await wait_for(lambda: _tpm_left(gw.gateway.admission, dev_key(gw), 1000 - usage.total_tokens))


async def test_per_provider_rpd_policy(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                       http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(mock_upstream.url), limits={"per_provider": {"mock": {"rpd": 2}}})
    gw = await gateway_factory(cfg)
    assert [(await post_chat(http, gw))[0] for _ in range(2)] == [200, 200]
    status, h, body = await post_chat(http, gw)
    assert status == 429 and "provider 'mock'" in body["error"]["message"]
    assert "requests per day" in body["error"]["message"]
    assert h["x-ratelimit-limit-requests"] == "2"
    assert int(h["Retry-After"]) > 60  # a day window: not a minute
    # another provider is not limited by mock's quota
    assert (await post_chat(http, gw, chat("up")))[0] == 200
    assert metric_value("gateway_rate_limited_total", reason="provider_rpd", key="dev", team="") >= 1


async def test_per_alias_and_team_limits(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                         http: aiohttp.ClientSession) -> None:
    cfg = quota_config(mock_upstream.url, teams={"research": {"limits": {"rpm": 3}}})
    cfg["keys"] = [
        {"name": "a", "key": "sk-a", "team": "research", "limits": {"per_alias": {"up": {"rpm": 1}}}},
        {"name": "b", "key": "sk-b", "team": "research"},
    ]
    gw = await gateway_factory(cfg)
    assert (await post_chat(http, gw, chat("up"), key="sk-a"))[0] == 200
    status, _, body = await post_chat(http, gw, chat("up"), key="sk-a")
    assert status == 429 and "model 'up'" in body["error"]["message"]
    # the alias limit did not stop key a's other alias; the team's rpm (3) is shared by a and b
    assert (await post_chat(http, gw, chat("demo"), key="sk-a"))[0] == 200
    assert (await post_chat(http, gw, chat("demo"), key="sk-b"))[0] == 200
    status, _, body = await post_chat(http, gw, chat("demo"), key="sk-b")
    assert status == 429 and "team 'research'" in body["error"]["message"]


async def test_ip_limit_applies_before_auth(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config(ip_limits={"rpm": 3}))
    assert (await post_chat(http, gw, key="sk-wrong"))[0] == 401
    assert (await post_chat(http, gw, key="sk-wrong"))[0] == 401
    assert (await post_chat(http, gw))[0] == 200
    status, h, body = await post_chat(http, gw)  # even a valid key: the IP is over its rate
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert "client IP" in body["error"]["message"] and int(h["Retry-After"]) >= 1
    assert metric_value("gateway_rate_limited_total", reason="ip_rpm", key="", team="") >= 1


async def test_cache_hits_count_against_rates_but_cost_nothing(gateway_factory: GatewayFactory,
                                                               mock_upstream: MockUpstream,
                                                               http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(mock_upstream.url, cache={"enabled": True}, pricing={"mock-1": {
        "input": 100.0, "output": 100.0}}), limits={"rpm": 2})
    gw = await gateway_factory(cfg)
    s1, h1, _ = await post_chat(http, gw, chat("up", "same"))
    s2, h2, _ = await post_chat(http, gw, chat("up", "same"))
    assert (s1, s2) == (200, 200)
    assert h2.get("x-gateway-cache") == "hit"
    assert float(h1["x-gateway-cost-usd"]) > 0 and float(h2["x-gateway-cost-usd"]) == 0
    assert h2["x-ratelimit-remaining-requests"] == "0"
    assert (await post_chat(http, gw, chat("up", "same")))[0] == 429
    assert mock_upstream.calls == 1


def test_default_gateway_yaml_ships_the_example_policy() -> None:
    cfg = load_config(Path(__file__).parents[2] / "gateway.yaml", env={})
    per_provider = cfg.keys[0].limits.per_provider  # type: ignore[union-attr]
    assert per_provider["gemini"].rpd == 100
    assert per_provider["openai"].rpd == 50
    assert per_provider["anthropic"].rpd == 50


async def test_key_limits_are_per_key(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    cfg = quota_config()
    cfg["keys"] = [{"name": "a", "key": "sk-a", "limits": {"rpm": 1}}, {"name": "b", "key": DEV_KEY,
                                                                       "limits": {"rpm": 1}}]
    gw = await gateway_factory(cfg)
    assert (await post_chat(http, gw, key="sk-a"))[0] == 200
    assert (await post_chat(http, gw, key="sk-a"))[0] == 429
    assert (await post_chat(http, gw))[0] == 200
