"""The client IP behind load balancers (`listen.trusted_proxies`), per-IP limits on every authenticated
route, and the failed-auth throttle (`ip_limits.failed_auth_per_minute`), through the real server."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from proxy.config import ConfigError, parse_config
from proxy.http.clientip import ClientIPResolver, forwarded_for, parse_hop
from tests.admission.conftest import ADMIN_KEY, chat, metric_value, quota_config, wait_for
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, free_port

LB = ["127.0.0.1/32"]  # the test client's own address plays the load balancer


async def call(http: aiohttp.ClientSession, gw: GatewayServer, method: str, path: str, *, key: str | None = DEV_KEY,
               xff: str | None = None, headers: dict[str, str] | None = None,
               body: Any = None) -> tuple[int, dict[str, str], Any]:
    h = dict(headers or {})
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    if xff is not None:
        h["X-Forwarded-For"] = xff
    async with http.request(method, gw.url + path, headers=h, json=body) as r:
        data = await r.json(content_type=None) if r.content_type == "application/json" else None
        return r.status, dict(r.headers), data


class Lines:
    """Collects the request log lines (Meter.log_to)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(fields)


async def ledger_ips(gw: GatewayServer) -> list[str | None]:
    await gw.gateway.ledger_writer.flush()
    rows = await gw.gateway.ledger_store.recent_usage(limit=100)
    return [r["client_ip"] for r in reversed(rows)]


async def seen_ip(http: aiohttp.ClientSession, gw: GatewayServer, **kw: Any) -> str:
    """The client IP the gateway resolved for one chat call: from its request log line."""
    lines = Lines()
    gw.gateway.pipeline.meter.log_to(lines)
    status, _, _ = await call(http, gw, "POST", "/v1/chat/completions", body=chat(), **kw)
    assert status == 200
    return str(lines.lines[-1]["client_ip"])


async def test_trusted_proxy_names_the_client_in_limits_logs_and_ledger(gateway_factory: GatewayFactory,
                                                                        http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config(listen={"trusted_proxies": LB}, ip_limits={"rpm": 2}))
    assert await seen_ip(http, gw, xff="203.0.113.7") == "203.0.113.7"
    assert await seen_ip(http, gw, xff="203.0.113.7") == "203.0.113.7"
    status, h, body = await call(http, gw, "POST", "/v1/chat/completions", body=chat(), xff="203.0.113.7")
    assert status == 429 and "client IP 203.0.113.7" in body["error"]["message"] and int(h["Retry-After"]) >= 1
    # another client behind the same load balancer has its own window
    assert await seen_ip(http, gw, xff="203.0.113.8") == "203.0.113.8"
    assert await ledger_ips(gw) == ["203.0.113.7", "203.0.113.7", "203.0.113.8"]


@pytest.mark.parametrize(("trusted", "headers", "client"), [
    # the client wrote the left-most entries itself: only the right-most untrusted one counts
    (LB, {"X-Forwarded-For": "1.1.1.1, 203.0.113.7"}, "203.0.113.7"),
    (LB, {"X-Forwarded-For": "6.6.6.6"}, "6.6.6.6"),
    # several of our own proxies in a row are skipped, right to left
    ([*LB, "10.0.0.0/8"], {"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 10.1.2.3, 10.0.0.1"}, "198.51.100.9"),
    # the peer is not one of ours: whatever it claims is ignored
    (["10.0.0.0/8"], {"X-Forwarded-For": "203.0.113.7"}, "127.0.0.1"),
    # RFC 7239, quoted IPv6 with a port, several elements
    (LB, {"Forwarded": 'for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1'}, "2001:db8:cafe::17"),
    (LB, {"Forwarded": "For=192.0.2.60:8080"}, "192.0.2.60"),
    # malformed: the peer
    (LB, {"X-Forwarded-For": "203.0.113.7, not-an-ip"}, "127.0.0.1"),
    (LB, {"Forwarded": "for=unknown"}, "127.0.0.1"),
    (LB, {"Forwarded": "proto=https"}, "127.0.0.1"),
    (LB, {}, "127.0.0.1"),
    # without trusted proxies the peer is the client, headers or not
    ([], {"X-Forwarded-For": "203.0.113.7"}, "127.0.0.1"),
])
async def test_which_address_is_the_client(gateway_factory: GatewayFactory, http: aiohttp.ClientSession,
                                           trusted: list[str], headers: dict[str, str], client: str) -> None:
    gw = await gateway_factory(quota_config(listen={"trusted_proxies": trusted}))
    assert await seen_ip(http, gw, headers=headers) == client


def test_header_parsing_edges() -> None:
    assert str(parse_hop("[::ffff:10.0.0.1]:80")) == "10.0.0.1"  # IPv4-mapped peers compare as IPv4
    assert str(parse_hop(' "2001:db8::1" ')) == "2001:db8::1"
    assert parse_hop("[2001:db8::1") is None and parse_hop("_hidden") is None
    assert forwarded_for(["for=a;by=b", "for=c"]) == ["a", "c"]
    r = ClientIPResolver(parse_config({"listen": {"trusted_proxies": ["10.0.0.0/8"]}}, env={}).listen.trusted_networks)
    assert r.walk(["10.0.0.2", "10.0.0.3"], "10.0.0.9") == "10.0.0.2"  # all ours: the farthest hop asked
    assert not r.peer_trusted("") and r.peer_trusted("10.9.9.9")
    with pytest.raises(ConfigError, match=r"listen.trusted_proxies: .*'10.0.0.0/33' is not an IP address or CIDR"):
        parse_config({"listen": {"trusted_proxies": ["10.0.0.0/33"]}}, env={})
    with pytest.raises(ConfigError, match=r"ip_limits\.failed_auth_per_minute"):
        parse_config({"ip_limits": {"failed_auth_per_minute": -1}}, env={})


@pytest.mark.parametrize(("method", "path", "key"), [
    ("GET", "/v1/models", DEV_KEY), ("GET", "/v1/models/demo", DEV_KEY), ("GET", "/v1/usage", DEV_KEY),
    ("GET", "/admin/keys", ADMIN_KEY), ("GET", "/admin/audit", ADMIN_KEY), ("DELETE", "/admin/cache", ADMIN_KEY),
])
async def test_ip_limits_cover_routes_outside_the_pipeline(gateway_factory: GatewayFactory,
                                                           http: aiohttp.ClientSession, method: str, path: str,
                                                           key: str) -> None:
    gw = await gateway_factory(quota_config(ip_limits={"rpm": 2}))
    assert [(await call(http, gw, method, path, key=key))[0] for _ in range(2)] == [200, 200]
    status, h, body = await call(http, gw, method, path, key=key)
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded" and int(h["Retry-After"]) >= 1
    assert "client IP 127.0.0.1" in body["error"]["message"]
    assert (await call(http, gw, "GET", "/healthz", key=None))[0] == 200  # probes are not limited


async def test_brute_force_blocks_the_ip_on_every_route(gateway_factory: GatewayFactory,
                                                        http: aiohttp.ClientSession) -> None:
    cfg = quota_config(listen={"trusted_proxies": LB}, ip_limits={"failed_auth_per_minute": 3})
    gw = await gateway_factory(cfg)
    attacker = "198.51.100.66"
    before = metric_value("gateway_rate_limited_total", reason="ip_failed_auth", key="", team="")
    # no key at all is not a guess: not counted
    assert (await call(http, gw, "POST", "/v1/chat/completions", key=None, body=chat(), xff=attacker))[0] == 401
    for path in ("/v1/models", "/v1/usage", "/v1/models"):  # three wrong keys, on any route
        assert (await call(http, gw, "GET", path, key=f"sk-guess-{path}", xff=attacker))[0] == 401
    routes = [("POST", "/v1/chat/completions", DEV_KEY, chat()),
              ("POST", "/v1/embeddings", DEV_KEY, {"model": "demo", "input": "x"}),
              ("POST", "/v1/gateway/batch", DEV_KEY, {"requests": [chat()]}),
              ("GET", "/v1/models", DEV_KEY, None), ("GET", "/v1/usage", DEV_KEY, None),
              ("GET", "/admin/keys", ADMIN_KEY, None), ("DELETE", "/admin/cache", ADMIN_KEY, None),
              ("POST", "/v1/chat/completions", "sk-guess-again", chat())]
    for method, path, key, body in routes:  # even a valid key: the IP is blocked for the rest of the window
        status, h, data = await call(http, gw, method, path, key=key, body=body, xff=attacker)
        assert status == 429, (path, data)
        assert data["error"]["code"] == "rate_limit_exceeded" and data["error"]["type"] == "requests"
        assert "failed authentications" in data["error"]["message"] and 1 <= int(h["Retry-After"]) <= 60
    assert metric_value("gateway_rate_limited_total", reason="ip_failed_auth", key="", team="") == before + len(routes)
    assert (await call(http, gw, "GET", "/healthz", key=None, xff=attacker))[0] == 200
    # other clients behind the same load balancer are not affected
    assert (await call(http, gw, "POST", "/v1/chat/completions", body=chat(), xff="198.51.100.67"))[0] == 200


async def test_wrong_admin_keys_count_too(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config(ip_limits={"failed_auth_per_minute": 2}))
    # a real API key on an admin route is a mistake, not a guess: 403, not counted
    for _ in range(3):
        assert (await call(http, gw, "GET", "/admin/keys", key=DEV_KEY))[0] == 403
    for _ in range(2):
        assert (await call(http, gw, "GET", "/admin/keys", key="sk-not-admin"))[0] == 401  # unknown key: as anywhere
    status, h, _ = await call(http, gw, "GET", "/admin/keys", key=ADMIN_KEY)
    assert status == 429 and int(h["Retry-After"]) >= 1
    assert (await call(http, gw, "POST", "/v1/chat/completions", body=chat()))[0] == 429


async def test_throttle_off(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config(ip_limits={"failed_auth_per_minute": 0}))
    for _ in range(25):
        assert (await call(http, gw, "GET", "/v1/models", key="sk-guess"))[0] == 401
    assert (await call(http, gw, "GET", "/v1/models"))[0] == 200


async def test_replicas_on_one_redis_share_the_failed_auth_count(gateway_factory: GatewayFactory, redis_url: str,
                                                                 http: aiohttp.ClientSession) -> None:
    cfg = quota_config(redis={"url": redis_url}, ip_limits={"failed_auth_per_minute": 4})
    a = await gateway_factory(cfg, port=free_port())
    b = await gateway_factory(cfg, port=free_port())
    for gw in (a, b, a):  # three of the four allowed, spread over both replicas
        assert (await call(http, gw, "GET", "/v1/models", key="sk-guess"))[0] == 401
    assert (await call(http, gw, "GET", "/v1/models"))[0] == 200 and (await call(http, b, "GET", "/v1/models"))[0] == 200
    assert (await call(http, b, "GET", "/v1/models", key="sk-guess"))[0] == 401  # the fourth, on b
    assert (await call(http, b, "GET", "/v1/models"))[0] == 429

    async def a_blocked() -> bool:  # a hears of it over pub/sub
        return (await call(http, a, "POST", "/v1/chat/completions", body=chat()))[0] == 429

    await wait_for(a_blocked, timeout=3)


async def test_streams_and_embeddings_behind_the_load_balancer(gateway_factory: GatewayFactory) -> None:
    """The handlers get a request whose `remote` is the client (aiohttp's clone): streams still flow."""
    gw = await gateway_factory(quota_config(listen={"trusted_proxies": LB}))
    lines = Lines()
    gw.gateway.pipeline.meter.log_to(lines)
    client = gw.openai(default_headers={"X-Forwarded-For": "192.0.2.1"})
    text = ""
    async for c in await client.chat.completions.create(model="demo", stream=True,
                                                        messages=[{"role": "user", "content": "hello there"}]):
        text += (c.choices[0].delta.content or "") if c.choices else ""
    assert text == "hello there"
    assert (await client.embeddings.create(model="demo", input="x")).data
    assert [line["client_ip"] for line in lines.lines] == ["192.0.2.1", "192.0.2.1"]
    assert await ledger_ips(gw) == ["192.0.2.1", "192.0.2.1"]
