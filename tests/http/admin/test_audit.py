"""GET /admin/audit shows every admin change — key changes, budget changes, cache invalidations — and every
failed admin authentication: who, what, when, from which client IP, before/after, never a secret."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp

from tests.admission.conftest import ADMIN_KEY, chat, quota_config
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer

CLIENT = "203.0.113.50"  # behind the load balancer (the test client, trusted)


async def call(http: aiohttp.ClientSession, gw: GatewayServer, method: str, path: str, body: Any = None,
               key: str = ADMIN_KEY) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": CLIENT}
    async with http.request(method, gw.url + path, json=body, headers=headers) as r:
        data = await r.json(content_type=None) if r.content_type == "application/json" else None
        return r.status, data, dict(r.headers)


async def audit(http: aiohttp.ClientSession, gw: GatewayServer, query: str = "") -> tuple[list[dict[str, Any]], str]:
    async with http.get(gw.url + "/admin/audit" + query, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
        assert r.status == 200
        text = await r.text()
        return list(reversed((await r.json())["data"])), text  # oldest first


async def gateway(gateway_factory: GatewayFactory) -> GatewayServer:
    return await gateway_factory(quota_config(listen={"trusted_proxies": ["127.0.0.1/32"]},
                                              cache={"enabled": True}))


async def test_key_and_budget_changes(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway(gateway_factory)
    status, created, _ = await call(http, gw, "POST", "/admin/keys", {"name": "svc", "budget": {"usd": 5}})
    assert status == 201
    kid, secret = created["id"], created["key"]
    assert (await call(http, gw, "PATCH", f"/admin/keys/{kid}", {"budget": {"usd": 9, "period": "daily"}}))[0] == 200
    assert (await call(http, gw, "PATCH", f"/admin/keys/{kid}", {"team": "ml"}))[0] == 200  # no budget change
    status, rotated, _ = await call(http, gw, "POST", f"/admin/keys/{kid}/rotate", {"grace_seconds": 5})
    assert status == 200
    assert (await call(http, gw, "DELETE", f"/admin/keys/{kid}"))[0] == 200

    entries, text = await audit(http, gw, f"?target={kid}")
    assert [e["action"] for e in entries] == ["key.create", "key.update", "budget.update", "key.update",
                                              "key.rotate", "key.delete"]
    for e in entries:
        assert e["actor"] == f"admin@{CLIENT}" and e["ip"] == CLIENT and e["at"]
    budget = entries[2]
    assert budget["before"] == {"budget": {"usd": 5.0, "period": "monthly", "alert_thresholds": [0.8, 1.0]}}
    assert budget["after"] == {"budget": {"usd": 9.0, "period": "daily", "alert_thresholds": [0.8, 1.0]}}
    assert entries[3]["before"]["team"] is None and entries[3]["after"]["team"] == "ml"
    assert entries[5]["before"]["name"] == "svc" and entries[5]["after"] is None
    for s in (secret, rotated["key"]):
        assert s not in text and hashlib.sha256(s.encode()).hexdigest() not in text
    only_budgets, _ = await audit(http, gw, "?action=budget.update")
    assert [e["target"] for e in only_budgets] == [kid]


async def test_cache_invalidations(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway(gateway_factory)
    async with http.post(gw.base_url + "/chat/completions", json=chat(text="cached"),
                         headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        assert r.status == 200
        entry = r.headers["x-gateway-cache-key"]
    status, data, _ = await call(http, gw, "DELETE", f"/admin/cache/{entry}")
    assert status == 200 and data["deleted"] is True
    assert (await call(http, gw, "POST", "/admin/cache/invalidate", chat(text="never asked")))[0] == 200
    status, data, _ = await call(http, gw, "DELETE", "/admin/cache?alias=demo")
    assert status == 200
    assert (await call(http, gw, "DELETE", "/admin/cache"))[0] == 200

    entries, _ = await audit(http, gw)
    cache = [e for e in entries if e["action"].startswith("cache.")]
    assert [(e["action"], e["target"]) for e in cache] == [
        ("cache.invalidate", entry), ("cache.invalidate", cache[1]["target"]), ("cache.clear", "demo"),
        ("cache.clear", None)]
    assert cache[0]["after"] == {"deleted": True} and cache[1]["after"] == {"deleted": False}
    assert cache[2]["after"] == {"alias": "demo", "deleted": 0} and cache[3]["after"]["alias"] is None
    assert all(e["actor"] == f"admin@{CLIENT}" and e["ip"] == CLIENT for e in cache)


async def test_failed_admin_authentications(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway(gateway_factory)
    wrong = "sk-almost-the-admin-key"
    status, data, _ = await call(http, gw, "DELETE", "/admin/cache", key=wrong)
    assert status == 401 and data["error"]["code"] == "invalid_api_key"  # unknown key: 401 as on every route
    status, _, _ = await call(http, gw, "PATCH", "/admin/keys/key_0123456789abcdef", {"disabled": True}, key=DEV_KEY)
    assert status == 403
    async with http.get(gw.url + "/admin/keys") as r:  # no key at all: 401, nothing to audit
        assert r.status == 401

    entries, text = await audit(http, gw, "?action=admin.auth_failed")
    assert [(e["actor"], e["target"], e["after"]) for e in entries] == [
        (f"unknown@{CLIENT}", "/admin/cache", {"method": "DELETE", "reason": "not the admin key"}),
        (f"key:dev@{CLIENT}", "/admin/keys/key_0123456789abcdef",
         {"method": "PATCH", "reason": "an API key without admin rights"}),
    ]
    assert all(e["ip"] == CLIENT and e["at"] and e["before"] is None for e in entries)
    for s in (wrong, DEV_KEY):
        assert s not in text and hashlib.sha256(s.encode()).hexdigest() not in text
