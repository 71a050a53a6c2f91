"""Routing rules from gateway.yaml: prompt size, key/team, header, metadata, p95 latency."""

from __future__ import annotations

import aiohttp

from proxy.config import parse_config
from proxy.core.context import RequestContext
from proxy.core.tokens import prompt_tokens as estimate_prompt_tokens
from tests.conftest import GatewayFactory, auth
from tests.resilience.conftest import chat, config, route, spy_logs

BIG = [{"role": "user", "content": "x" * 400}]


async def rules_gateway(gateway_factory: GatewayFactory, upstreams, rules: list[dict]):  # type: ignore[no-untyped-def,type-arg]
    ups = await upstreams(4)
    names = ["smart", "long", "cheap", "emb"]
    cfg = config({f"u{i}": u.url for i, u in enumerate(ups)},
                 {n: {"route": route(f"u{i}", model=f"{n}-model")} for i, n in enumerate(names)},
                 routing_rules=rules)
    return await gateway_factory(cfg), dict(zip(names, ups, strict=True))


RULES = [
    {"when": {"prompt_tokens_gt": 50}, "use": "long"},
    {"when": {"team": "research"}, "use": "smart"},
    {"when": {"header": {"x-priority": "low"}}, "use": "cheap"},
    {"when": {"metadata": {"tier": "free"}}, "use": "cheap"},
    {"when": {"alias": "smart", "key": "dev", "header": {"x-batch": "*"}}, "use": "cheap"},
]


async def test_rules_first_match_wins(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    gw, _ = await rules_gateway(gateway_factory, upstreams, RULES)
    spy = spy_logs(gw)
    # no rule: served as asked
    r = await chat(gw, "smart")
    assert r.json["model"] == "smart-model" and "x-gateway-route-rule" not in r.headers
    # long prompt -> long, even for a research team key (rule 0 comes first)
    r = await chat(gw, "cheap", messages=BIG, key="sk-test-research")
    assert r.json["model"] == "long-model" and r.headers["x-gateway-route-rule"] == "0"
    assert spy.lines[-1]["route_rule"] == 0  # in the request's log line
    # team
    r = await chat(gw, "cheap", key="sk-test-research")
    assert r.json["model"] == "smart-model" and r.headers["x-gateway-route-rule"] == "1"
    # header
    r = await chat(gw, "smart", headers={"X-Priority": "low"})
    assert r.json["model"] == "cheap-model" and r.headers["x-gateway-route-rule"] == "2"
    r = await chat(gw, "smart", headers={"X-Priority": "high"})
    assert r.json["model"] == "smart-model"
    # request metadata
    r = await chat(gw, "smart", metadata={"tier": "free"})
    assert r.json["model"] == "cheap-model" and r.headers["x-gateway-route-rule"] == "3"
    # all conditions of a rule must hold: alias + key + header present
    r = await chat(gw, "long", headers={"x-batch": "1"})
    assert r.json["model"] == "long-model"
    r = await chat(gw, "smart", headers={"x-batch": "1"})
    assert r.json["model"] == "cheap-model" and r.headers["x-gateway-route-rule"] == "4"


async def test_unscoped_rules_leave_embeddings_alone(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    gw, ups = await rules_gateway(gateway_factory, upstreams, [{"when": {"prompt_tokens_gt": 1}, "use": "long"}])
    async with aiohttp.ClientSession() as s, s.post(gw.base_url + "/embeddings", headers=auth(),
                                                    json={"model": "emb", "input": "x" * 100}) as r:
        assert r.status == 200 and "x-gateway-route-rule" not in r.headers
    assert ups["emb"].calls == 1 and ups["long"].calls == 0


async def test_unknown_model_is_404_before_rules(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    gw, _ = await rules_gateway(gateway_factory, upstreams, [{"when": {}, "use": "long"}])
    r = await chat(gw, "nope")
    assert r.status == 404 and r.error["code"] == "model_not_found"


async def test_p95_latency_rule_routes_away_from_a_slow_alias(gateway_factory: GatewayFactory, upstreams) -> None:  # type: ignore[no-untyped-def]
    gw, ups = await rules_gateway(gateway_factory, upstreams,
                                  [{"when": {"p95_latency_ms_gt": {"alias": "smart", "value": 30}}, "use": "cheap"}])
    ups["smart"].configure(latency=0.05)
    seen: list[RequestContext] = []
    gw.gateway.pipeline.meter.on_finish(seen.append)
    served = [(await chat(gw, "smart")).json["model"] for _ in range(8)]
    # 5 samples are needed before the p95 counts; then smart's 50 ms p95 > 30 ms sends it to cheap
    assert served[:5] == ["smart-model"] * 5
    assert served[5:] == ["cheap-model"] * 3
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("gateway_route_rule_matches_total", {"rule": "0", "alias": "cheap"}) >= 3
    assert seen[-1].notes["rerouted_from"] == "smart" and "rerouted_from" not in seen[0].notes
    # the rule is scoped to requests for smart
    assert (await chat(gw, "long")).json["model"] == "long-model"


def test_estimated_tokens_computed_once_and_shared() -> None:
    ctx = RequestContext.new("chat", None, "")
    ctx.body = {"messages": [{"role": "user", "content": "a" * 400}]}
    n = estimate_prompt_tokens(ctx)
    assert 100 <= n <= 115 and ctx.estimated_tokens == n
    ctx.body = {"messages": []}
    assert estimate_prompt_tokens(ctx) == n  # cached on ctx (another stage may have set it)
    other = RequestContext.new("embeddings", None, "")
    other.body = {"input": ["abcd"] * 10}
    assert estimate_prompt_tokens(other) == len('["abcd","abcd","abcd","abcd","abcd","abcd","abcd","abcd","abcd","abcd"]') // 4


def test_rule_config_validation() -> None:
    import pytest

    from proxy.config import ConfigError

    base = {"providers": {"m": {"type": "mock"}}, "models": {"a": {"route": [{"provider": "m", "model": "x"}]}}}
    with pytest.raises(ConfigError, match=r"routing_rules\.0\.use"):
        parse_config({**base, "routing_rules": [{"when": {"team": "t"}, "use": "zzz"}]}, env={})
    with pytest.raises(ConfigError, match="p95_latency_ms_gt"):
        parse_config({**base, "routing_rules": [{"when": {"p95_latency_ms_gt": {"value": 3}}, "use": "a"}]}, env={})
