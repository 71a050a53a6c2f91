"""GET /health/providers: probes (cached), breaker state, latency and last error per provider."""

from __future__ import annotations

from tests.conftest import GatewayFactory
from tests.resilience.conftest import chat, config, dead_url, health, route


async def test_report_and_cache(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    cfg = config({"a": up.url, "gone": dead_url()}, {"smart": {"route": route("a", "gone")}})
    cfg["providers"]["local"] = {"type": "mock"}
    cfg["providers"]["off"] = {"type": "openai", "api_key": "${NOT_SET_ANYWHERE}"}
    gw = await gateway_factory(cfg)
    assert (await chat(gw)).status == 200
    status, report = await health(gw)
    assert status == 200 and report["status"] == "degraded"
    ps = report["providers"]
    a = ps["a"]
    assert a["healthy"] and a["breaker"] == "closed" and a["probe"]["error"] is None
    assert a["latency_ms"] > 0 and a["last_error"] is None
    (dep,) = a["deployments"]
    assert dep["model"] == "mock-1" and dep["requests"] == 1 and dep["latency_ewma_ms"] > 0
    assert dep["breaker"]["state"] == "closed"
    gone = ps["gone"]
    assert not gone["healthy"] and gone["probe"]["error"]["type"] == "connect"
    assert ps["local"]["healthy"]  # in-process mock: nothing to probe
    assert ps["off"] == {"type": "openai", "enabled": False, "disabled_reason": "env var not set: NOT_SET_ANYWHERE"}
    assert up.state.calls["/v1/models"] == 1
    await health(gw)
    assert up.state.calls["/v1/models"] == 1  # cached for a few seconds: monitors cannot hammer upstreams
    assert "sk-upstream" not in str(report)


async def test_all_down_is_503(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(config({"a": dead_url()}, {"smart": {"route": route("a")}}))
    r = await chat(gw)
    assert r.status == 502
    status, report = await health(gw)
    assert status == 503 and report["status"] == "down"
    a = report["providers"]["a"]
    assert a["last_error"]["type"] == "connect" and a["last_error"]["at"].endswith("+00:00")
    assert a["deployments"][0]["failures"] == 3


async def test_probe_rejected_credentials(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    (up,) = await upstreams(1)
    cfg = config({"a": up.url}, {"smart": {"route": route("a")}})
    cfg["providers"]["a"]["api_key"] = "sk-wrong-secret-value"
    gw = await gateway_factory(cfg)
    status, report = await health(gw)
    err = report["providers"]["a"]["probe"]["error"]
    assert status == 503 and err["type"] == "auth" and err["status"] == 401
    assert "sk-wrong-secret-value" not in str(report)
