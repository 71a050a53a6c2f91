"""The response cache is opt-in: off without a `cache:` section, on per alias or per key (also for a key
created through the admin API), off per alias or key while the global default is on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from proxy.config import ConfigError, load_config, parse_config
from tests.cache.conftest import ADMIN_KEY, admin, cache_config, chat_body, post
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream, base_config


def no_cache_section(upstream_url: str) -> dict[str, Any]:
    cfg = base_config(upstream_url, admin={"key": ADMIN_KEY})
    cfg.pop("cache", None)
    cfg["models"]["up"]["retry"] = {"attempts": 1}  # one upstream call per request: counts stay exact
    return cfg


async def twice(http: Any, gw: GatewayServer, body: dict[str, Any], key: str = DEV_KEY) -> list[dict[str, str]]:
    out = []
    for _ in range(2):
        status, headers, _ = await post(http, gw, body, key=key)
        assert status == 200
        out.append(headers)
    return out


async def test_without_a_cache_section_every_request_reaches_the_upstream(
        gateway_factory: GatewayFactory, mock_upstream: MockUpstream, http: Any) -> None:
    cfg = no_cache_section(mock_upstream.url)
    assert parse_config(cfg, env={}).cache.enabled is False
    gw = await gateway_factory(cfg)
    sampled = chat_body("tell me a story", temperature=1)
    for h in await twice(http, gw, sampled):
        assert "x-gateway-cache" not in h and "x-gateway-cache-key" not in h
    assert mock_upstream.calls == 2
    # streams too, and concurrent identical requests are not coalesced
    await twice(http, gw, {**sampled, "stream": True})
    assert mock_upstream.calls == 4
    mock_upstream.configure(latency=0.2)
    results = await asyncio.gather(*(post(http, gw, sampled) for _ in range(3)))
    assert mock_upstream.calls == 7
    assert not any("x-gateway-coalesced" in h for _, h, _ in results)


async def test_enabled_false_is_the_same_as_no_section(gateway_factory: GatewayFactory,
                                                       mock_upstream: MockUpstream, http: Any) -> None:
    gw = await gateway_factory(cache_config(mock_upstream.url, enabled=False))
    for h in await twice(http, gw, chat_body()):
        assert "x-gateway-cache" not in h
    assert mock_upstream.calls == 2


@pytest.mark.parametrize("section", [{"enabled": True}, {}, {"ttl": "1h"}, {"backend": "memory"}])
async def test_a_cache_section_turns_it_on(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                           http: Any, section: dict[str, Any]) -> None:
    cfg = no_cache_section(mock_upstream.url)
    cfg["cache"] = section
    gw = await gateway_factory(cfg)
    h1, h2 = await twice(http, gw, chat_body())
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("miss", "hit")
    assert mock_upstream.calls == 1


async def test_alias_turns_it_on_while_the_default_is_off(gateway_factory: GatewayFactory,
                                                          mock_upstream: MockUpstream, http: Any) -> None:
    cfg = no_cache_section(mock_upstream.url)
    cfg["models"]["cached"] = {"route": [{"provider": "up", "model": "mock-1"}], "retry": {"attempts": 1},
                               "cache": {"enabled": True}}
    gw = await gateway_factory(cfg)
    h1, h2 = await twice(http, gw, {**chat_body(), "model": "cached"})
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("miss", "hit")
    assert mock_upstream.calls == 1
    # the other alias stays uncached
    for h in await twice(http, gw, chat_body()):
        assert "x-gateway-cache" not in h
    assert mock_upstream.calls == 3


async def test_key_turns_it_off_while_the_default_is_on(gateway_factory: GatewayFactory,
                                                        mock_upstream: MockUpstream, http: Any) -> None:
    cfg = cache_config(mock_upstream.url)
    cfg["keys"].append({"name": "fresh", "key": "sk-fresh", "cache": {"enabled": False}})
    gw = await gateway_factory(cfg)
    h1, h2 = await twice(http, gw, chat_body(), key="sk-fresh")
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("bypass", "bypass")
    assert mock_upstream.calls == 2
    h1, h2 = await twice(http, gw, chat_body())  # the default still caches for other keys
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("miss", "hit")
    assert mock_upstream.calls == 3


async def test_key_turns_it_on_while_the_default_is_off(gateway_factory: GatewayFactory,
                                                        mock_upstream: MockUpstream, http: Any) -> None:
    cfg = no_cache_section(mock_upstream.url)
    cfg["keys"].append({"name": "cached", "key": "sk-cached", "cache": {"enabled": True}})
    gw = await gateway_factory(cfg)
    h1, h2 = await twice(http, gw, chat_body(), key="sk-cached")
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("miss", "hit")
    for h in await twice(http, gw, chat_body()):
        assert "x-gateway-cache" not in h
    assert mock_upstream.calls == 3


async def test_alias_off_wins_over_key_on(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                          http: Any) -> None:
    cfg = no_cache_section(mock_upstream.url)
    cfg["models"]["up"]["cache"] = {"enabled": False}
    cfg["keys"].append({"name": "cached", "key": "sk-cached", "cache": {"enabled": True}})
    gw = await gateway_factory(cfg)
    h1, h2 = await twice(http, gw, chat_body(), key="sk-cached")
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("bypass", "bypass")
    assert mock_upstream.calls == 2


async def test_admin_created_key_turns_it_on(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                             http: Any) -> None:
    gw = await gateway_factory(no_cache_section(mock_upstream.url))
    async with http.post(gw.url + "/admin/keys", json={"name": "svc", "cache": {"enabled": True}},
                         headers=admin()) as r:
        assert r.status == 201
        secret = (await r.json())["key"]
    h1, h2 = await twice(http, gw, chat_body(), key=secret)
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("miss", "hit")
    assert mock_upstream.calls == 1
    # the admin API clears what it stored, and says gateway.yaml turns the cache on nowhere
    async with http.delete(gw.url + "/admin/cache", headers=admin()) as r:
        assert await r.json() == {"deleted": 1, "enabled": False}


def test_redis_backend_needs_redis_when_an_alias_turns_the_cache_on() -> None:
    cfg = no_cache_section("http://127.0.0.1:9")
    cfg["cache"] = {"enabled": False, "backend": "redis"}
    parse_config(cfg, env={})  # on nowhere: fine
    cfg["models"]["up"]["cache"] = {"ttl": "1h"}
    with pytest.raises(ConfigError, match=r"cache\.backend: redis needs"):
        parse_config(cfg, env={})


def test_shipped_configs_show_the_cache_off() -> None:
    repo = Path(__file__).resolve().parents[2]
    for path in (repo / "gateway.yaml", repo / "config" / "gateway.compose.yaml"):
        assert "cache:" in path.read_text()
        cfg = load_config(path, env={})
        assert cfg.cache.enabled is False and not cfg.cache_configured(), path
