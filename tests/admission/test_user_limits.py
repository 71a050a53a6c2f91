"""A user's limits and budget apply across all of that user's keys, like a team's: in-process, and on two
replicas through Redis; edits through the admin API take effect at once; /admin/usage?group_by=user."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.admission.conftest import PRICING, admin, chat, metric_value, post_chat, quota_config
from tests.conftest import GatewayFactory, GatewayServer, free_port


def user_config(**user: Any) -> dict[str, Any]:
    cfg = quota_config(pricing=PRICING, users=[{"email": "ann@example.com", "name": "Ann", **user}])
    cfg["keys"] += [{"name": "ann-1", "key": "sk-ann-1", "user_id": "ann@example.com"},
                    {"name": "ann-2", "key": "sk-ann-2", "user_id": "ann@example.com"}]
    return cfg


async def test_user_rpm_is_shared_by_the_users_keys(gateway_factory: GatewayFactory,
                                                    http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(user_config(limits={"rpm": 3}))
    statuses = [(await post_chat(http, gw, key=k))[0] for k in ("sk-ann-1", "sk-ann-2", "sk-ann-1")]
    assert statuses == [200, 200, 200]
    status, headers, body = await post_chat(http, gw, key="sk-ann-2")
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert "user 'ann@example.com'" in body["error"]["message"] and int(headers["Retry-After"]) >= 1
    assert (await post_chat(http, gw))[0] == 200  # another key, of no user: not limited
    assert metric_value("gateway_rate_limited_total", reason="user_rpm", key="ann-2", team="") >= 1


async def test_user_budget_is_shared_by_the_users_keys(gateway_factory: GatewayFactory,
                                                       http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(user_config(budget={"usd": 0.01, "period": "daily"}))
    served = 0
    for i in range(20):
        status, _, body = await post_chat(http, gw, chat(max_tokens=2), key=("sk-ann-1", "sk-ann-2")[i % 2])
        if status == 429:
            assert body["error"]["code"] == "insufficient_quota" and "user 'ann@example.com'" in body["error"]["message"]
            break
        served += 1
    assert served == 5  # $0.002 a call, whichever key: the 6th starts at the user's limit
    async with http.get(gw.url + "/admin/budgets?scope=user", headers=admin()) as r:
        data = (await r.json())["data"]
    assert [(b["id"], b["spend_usd"]) for b in data] == [("cfg:ann@example.com", 0.01)]


async def test_user_limits_edited_through_the_admin_api_apply_to_their_db_keys(
        gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config())
    async with http.post(gw.url + "/admin/users", json={"email": "bo@example.com", "name": "Bo"},
                         headers=admin()) as r:
        user = await r.json()
    keys = []
    for name in ("bo-1", "bo-2"):
        async with http.post(gw.url + "/admin/keys", json={"name": name, "user_id": user["id"]}, headers=admin()) as r:
            keys.append((await r.json())["key"])
    assert [(await post_chat(http, gw, key=k))[0] for k in keys * 2] == [200] * 4  # no limits yet
    async with http.patch(gw.url + f"/admin/users/{user['id']}", json={"limits": {"rpm": 5}},
                          headers=admin()) as r:
        assert r.status == 200
    # the user's counter counts from now on: 5 more across both keys
    statuses = [(await post_chat(http, gw, key=k))[0] for k in keys * 3]
    assert statuses.count(200) == 5 and statuses[-1] == 429
    async with http.get(gw.base_url + "/usage", headers={"Authorization": f"Bearer {keys[0]}"}) as r:
        limits = (await r.json())["limits"]
    assert {(lim["scope"], lim["metric"], lim["remaining"]) for lim in limits} == {("user", "rpm", 0)}


async def test_two_replicas_share_a_users_limit_through_redis(gateway_factory: GatewayFactory, redis_url: str,
                                                              http: aiohttp.ClientSession) -> None:
    cfg = user_config(limits={"rpm": 8})
    cfg["redis"] = {"url": redis_url}
    a = await gateway_factory(cfg, port=free_port())
    b = await gateway_factory(cfg, port=free_port())
    calls = [post_chat(http, gw, key=k) for gw in (a, b) for k in ("sk-ann-1", "sk-ann-2") for _ in range(5)]
    statuses = [r[0] for r in await asyncio.gather(*calls)]
    assert statuses.count(200) == 8 and statuses.count(429) == 12


async def test_usage_grouped_and_filtered_by_user(gateway_factory: GatewayFactory,
                                                  http: aiohttp.ClientSession) -> None:
    cfg = user_config()
    cfg["keys"].append({"name": "legacy", "key": "sk-legacy", "user": "carol"})  # a free-form user, as before
    gw: GatewayServer = await gateway_factory(cfg)
    for key in ("sk-ann-1", "sk-ann-2", "sk-ann-2", "sk-legacy"):
        assert (await post_chat(http, gw, key=key))[0] == 200
    assert (await post_chat(http, gw))[0] == 200  # the dev key: no user
    async with http.get(gw.url + "/admin/usage?group_by=user", headers=admin()) as r:
        data = await r.json()
    rows = {g["user"]: g for g in data["data"]}
    assert rows["cfg:ann@example.com"]["calls"] == 3 and rows["cfg:ann@example.com"]["user_email"] == "ann@example.com"
    assert rows["carol"]["calls"] == 1 and rows["carol"]["user_email"] is None
    assert rows[None]["calls"] == 1
    for who in ("ann@example.com", "cfg:ann@example.com"):
        async with http.get(gw.url + f"/admin/usage?user={who}", headers=admin()) as r:
            assert (await r.json())["totals"]["calls"] == 3, who
    async with http.get(gw.url + "/admin/usage?user=carol", headers=admin()) as r:
        assert (await r.json())["totals"]["calls"] == 1
    async with http.get(gw.url + "/admin/usage?group_by=user&format=csv", headers=admin()) as r:
        lines = (await r.text()).splitlines()
    assert lines[0].startswith("user,user_email,calls") and any(
        line.startswith("cfg:ann@example.com,ann@example.com,3,") for line in lines)
