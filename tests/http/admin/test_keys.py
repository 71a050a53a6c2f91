"""Virtual keys through the admin API and the real HTTP server: create (secret once), list, get, update,
disable, delete, rotate with grace; validation (422), authz (401/403), 404s; the audit log."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import openai
import pytest

from tests.admission.conftest import ADMIN_KEY, admin, post_chat, quota_config
from tests.conftest import GatewayFactory, GatewayServer


async def call(http: aiohttp.ClientSession, gw: GatewayServer, method: str, path: str, body: Any = None,
               key: str | None = ADMIN_KEY) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.request(method, gw.url + path, json=body, headers=headers) as r:
        text = await r.text()
        data = await r.json(content_type=None) if r.content_type == "application/json" else None
        return r.status, data, text


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> GatewayServer:
    return await gateway_factory(quota_config())


async def test_key_lifecycle_and_secret_shown_once(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    status, created, text = await call(http, gw, "POST", "/admin/keys", {
        "name": "svc-a", "models": ["demo"], "user": "alice", "team": "ml", "metadata": {"env": "test"},
        "limits": {"rpm": 100, "per_provider": {"mock": {"rpd": 1000}}}, "budget": {"usd": 5, "period": "daily"}})
    assert status == 201, text
    secret = created["key"]
    assert secret.startswith("sk-gw-") and created["id"].startswith("key_") and created["source"] == "db"
    assert created["limits"]["per_provider"]["mock"]["rpd"] == 1000 and created["user"] == "alice"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    # the key works at once, with its own models restriction
    client = gw.openai(secret)
    r = await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content
    # never again: not in list, get, update, audit
    for path in ("/admin/keys", f"/admin/keys/{created['id']}", "/admin/audit"):
        status, data, text = await call(http, gw, "GET", path)
        assert status == 200 and secret not in text and digest not in text
    status, listed, _ = await call(http, gw, "GET", "/admin/keys")
    by_id = {k["id"]: k for k in listed["data"]}
    assert by_id["cfg:dev"]["source"] == "config" and by_id["cfg:dev"]["read_only"] is True
    assert "key" not in by_id[created["id"]] and "key_sha256" not in by_id[created["id"]]
    status, got, _ = await call(http, gw, "GET", f"/admin/keys/{created['id']}")
    assert got["name"] == "svc-a" and got["team"] == "ml"

    # update: limits take effect immediately
    status, updated, text = await call(http, gw, "PATCH", f"/admin/keys/{created['id']}",
                                       {"limits": {"rpm": 1}, "metadata": {"env": "prod"}})
    assert status == 200 and updated["limits"] == {"rpm": 1, "per_provider": {}, "per_alias": {}}, text
    statuses = [(await post_chat(http, gw, key=secret))[0] for _ in range(2)]
    assert statuses == [200, 429]
    # disable -> 401 at once; enable again -> works
    assert (await call(http, gw, "PATCH", f"/admin/keys/{created['id']}", {"disabled": True}))[0] == 200
    status, _, body = await post_chat(http, gw, key=secret)
    assert status == 401 and body["error"]["code"] == "key_disabled"
    assert (await call(http, gw, "PATCH", f"/admin/keys/{created['id']}",
                       {"disabled": False, "limits": None}))[0] == 200
    assert (await post_chat(http, gw, key=secret))[0] == 200
    # models restriction
    status, _, body = await post_chat(http, gw, {"model": "other", "messages": [{"role": "user", "content": "x"}]},
                                      key=secret)
    assert status == 403
    # delete -> 401, 404
    status, data, _ = await call(http, gw, "DELETE", f"/admin/keys/{created['id']}")
    assert status == 200 and data["deleted"] is True
    assert (await post_chat(http, gw, key=secret))[0] == 401
    assert (await call(http, gw, "GET", f"/admin/keys/{created['id']}"))[0] == 404
    assert (await call(http, gw, "DELETE", f"/admin/keys/{created['id']}"))[0] == 404

    # audit: who, what, when, before/after, never the secret
    status, audit, text = await call(http, gw, "GET", f"/admin/audit?target={created['id']}")
    actions = [a["action"] for a in reversed(audit["data"])]
    assert actions == ["key.create", "key.update", "key.update", "key.update", "key.delete"]
    first_update = audit["data"][-2]
    assert first_update["before"]["limits"]["rpm"] == 100 and first_update["after"]["limits"]["rpm"] == 1
    assert first_update["actor"].startswith("admin@") and first_update["at"]
    assert secret not in text and digest not in text


async def test_rotate_with_grace_then_without(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    _, created, _ = await call(http, gw, "POST", "/admin/keys", {"name": "rot"})
    old = created["key"]
    assert (await post_chat(http, gw, key=old))[0] == 200  # cached under the old digest
    status, rotated, text = await call(http, gw, "POST", f"/admin/keys/{created['id']}/rotate",
                                       {"grace_seconds": 1})
    assert status == 200, text
    new = rotated["key"]
    assert new != old and rotated["id"] == created["id"] and rotated["previous_expires_at"]
    assert (await post_chat(http, gw, key=old))[0] == 200  # grace: both work
    assert (await post_chat(http, gw, key=new))[0] == 200
    await asyncio.sleep(1.2)
    assert (await post_chat(http, gw, key=old))[0] == 401
    assert (await post_chat(http, gw, key=new))[0] == 200
    # no grace (empty body): the old one stops at once
    async with http.post(gw.url + f"/admin/keys/{created['id']}/rotate", headers=admin()) as r:
        assert r.status == 200
        newest = (await r.json())["key"]
    assert (await post_chat(http, gw, key=new))[0] == 401
    assert (await post_chat(http, gw, key=newest))[0] == 200
    status, audit, text = await call(http, gw, "GET", "/admin/audit?action=key.rotate")
    assert len(audit["data"]) == 2 and audit["data"][1]["after"]["grace_seconds"] == 1
    assert old not in text and new not in text and newest not in text


async def test_expiry_stops_a_key(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    status, created, text = await call(http, gw, "POST", "/admin/keys", {"name": "short", "expires_at": soon})
    assert status == 201, text
    assert (await post_chat(http, gw, key=created["key"]))[0] == 200
    await asyncio.sleep(1.1)
    status, _, body = await post_chat(http, gw, key=created["key"])
    assert status == 401 and body["error"]["code"] == "key_expired"


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "limits": {"rpm": -1}}, "limits.rpm"),
    ({"name": "x", "limits": {"rpm": 10**12}}, "limits.rpm"),
    ({"name": "x", "limits": {"tpm": 0}}, "limits.tpm"),
    ({"name": "x", "limits": {"per_provider": {"mock": {"rpd": -5}}}}, "limits.per_provider.mock.rpd"),
    ({"name": "x", "limits": {"per_provider": {"nosuch": {"rpd": 5}}}}, "limits.per_provider.nosuch"),
    ({"name": "x", "limits": {"per_alias": {"nosuch": {"rpm": 5}}}}, "limits.per_alias.nosuch"),
    ({"name": "x", "budget": {"usd": -3}}, "budget.usd"),
    ({"name": "x", "budget": {"usd": 5, "period": "hourly"}}, "budget.period"),
    ({"name": "x", "expires_at": "yesterday"}, "expires_at"),
    ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"name": ""}, "name"),
    ({"name": "cfg:dev"}, "name"),
    ({}, "name"),
    ({"name": "x", "rpm": 5}, "rpm"),
    ({"name": "x", "models": "demo"}, "models"),
    ({"name": "x", "metadata": {"blob": "x" * 20_000}}, "metadata"),
    ({"name": "x", "optimize": {"mode": "shrink"}}, "optimize.mode"),
    ({"name": "x", "optimize": {"mode": "rewrite", "via": "nosuch"}}, "optimize.via"),
])
async def test_invalid_create_payloads_are_422_naming_the_field(gw: GatewayServer, http: aiohttp.ClientSession,
                                                                body: dict[str, Any], field: str) -> None:
    status, data, text = await call(http, gw, "POST", "/admin/keys", body)
    assert status == 422, text
    assert data["error"]["param"] == field and field in data["error"]["message"]


async def test_update_validation_conflicts_and_not_found(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    _, created, _ = await call(http, gw, "POST", "/admin/keys", {"name": "one"})
    kid = created["id"]
    for body, field in (({"limits": {"rpd": 0}}, "limits.rpd"), ({"disabled": None}, "disabled"),
                        ({}, "body"), ({"name": None}, "name"), ({"key": "sk-mine"}, "key")):
        status, data, text = await call(http, gw, "PATCH", f"/admin/keys/{kid}", body)
        assert status == 422 and data["error"]["param"] == field, text
    assert (await call(http, gw, "POST", "/admin/keys", {"name": "one"}))[0] == 409
    assert (await call(http, gw, "POST", "/admin/keys", {"name": "dev"}))[0] == 409  # a gateway.yaml key
    assert (await call(http, gw, "PATCH", "/admin/keys/cfg:dev", {"disabled": True}))[0] == 409
    assert (await call(http, gw, "DELETE", "/admin/keys/cfg:dev"))[0] == 409
    assert (await call(http, gw, "GET", "/admin/keys/cfg:dev"))[0] == 200
    for method, path, body in (("GET", "/admin/keys/key_0000000000000000", None),
                               ("PATCH", "/admin/keys/nope", {"user": "x"}),
                               ("DELETE", "/admin/keys/nope", None),
                               ("POST", "/admin/keys/nope/rotate", {"grace_seconds": 5}),
                               ("GET", "/admin/keys/cfg:nope", None)):
        status, data, _ = await call(http, gw, method, path, body)
        assert status == 404 and data["error"]["code"] == "key_not_found"
    status, data, _ = await call(http, gw, "POST", f"/admin/keys/{kid}/rotate", {"grace_seconds": -1})
    assert status == 422 and data["error"]["param"] == "grace_seconds"
    status, data, _ = await call(http, gw, "POST", f"/admin/keys/{kid}/rotate", {"grace_seconds": 10**9})
    assert status == 422
    async with http.post(gw.url + "/admin/keys", data=b"{not json",
                         headers={**admin(), "Content-Type": "application/json"}) as r:
        assert r.status == 400


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/keys/x"), ("PATCH", "/admin/keys/x"),
    ("DELETE", "/admin/keys/x"), ("POST", "/admin/keys/x/rotate"), ("GET", "/admin/usage"),
    ("GET", "/admin/budgets"), ("GET", "/admin/audit"),
])
async def test_admin_routes_need_the_admin_key(gw: GatewayServer, http: aiohttp.ClientSession, method: str,
                                               path: str) -> None:
    status, data, _ = await call(http, gw, method, path, {"name": "x"}, key="sk-test-dev")
    assert status == 403 and data["error"]["code"] == "admin_required"
    status, data, _ = await call(http, gw, method, path, {"name": "x"}, key=None)
    assert status == 401


async def test_admin_key_is_not_an_api_key(gw: GatewayServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        await gw.openai(ADMIN_KEY).chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])


async def test_keys_on_postgres_and_shared_between_replicas(gateway_factory: GatewayFactory, pg_url: str,
                                                            http: aiohttp.ClientSession) -> None:
    """No Redis: a change reaches the other replica by polling the database (about a second)."""
    cfg = quota_config(database={"url": pg_url})
    a = await gateway_factory(cfg)
    b = await gateway_factory(cfg)
    _, created, _ = await call(http, a, "POST", "/admin/keys", {"name": "pg"})
    assert (await post_chat(http, b, key=created["key"]))[0] == 200
    assert (await call(http, a, "DELETE", f"/admin/keys/{created['id']}"))[0] == 200
    for _ in range(40):
        if (await post_chat(http, b, key=created["key"]))[0] == 401:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("replica b still accepts the deleted key")
