"""Users through the admin API and the real server: CRUD, validation (422 naming the field), 404, duplicate
e-mail (409), config users read-only, keys given to a user, and what disabling or deleting a user does to
their sessions and keys; the audit log names the acting console user."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.admission.conftest import ADMIN_KEY, chat, quota_config
from tests.conftest import GatewayFactory, GatewayServer, auth
from tests.http.admin.test_keys import call
from tests.http.console import sign_in

PASSWORD = "s3cret-enough"


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> GatewayServer:
    return await gateway_factory(quota_config(users=[{"email": "root@example.com", "name": "Root", "role": "admin"}]))


async def new_user(http: aiohttp.ClientSession, gw: GatewayServer, **fields: Any) -> dict[str, Any]:
    body = {"email": "ann@example.com", "name": "Ann", "team": "ml", "role": "member", "password": PASSWORD,
            **fields}
    status, data, text = await call(http, gw, "POST", "/admin/users", body)
    assert status == 201, text
    return data  # type: ignore[no-any-return]


async def test_user_crud(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    ann = await new_user(http, gw, email="Ann@Example.com", limits={"rpm": 5}, budget={"usd": 3, "period": "daily"})
    assert ann["id"].startswith("usr_") and ann["email"] == "ann@example.com" and ann["has_password"] is True
    assert "password" not in ann and "password_hash" not in ann and ann["limits"]["rpm"] == 5
    status, listed, text = await call(http, gw, "GET", "/admin/users")
    assert status == 200 and PASSWORD not in text and "argon2" not in text
    by_email = {u["email"]: u for u in listed["data"]}
    assert by_email["root@example.com"]["source"] == "config" and by_email["root@example.com"]["read_only"]
    status, got, _ = await call(http, gw, "GET", f"/admin/users/{ann['id']}")
    assert status == 200 and got["name"] == "Ann" and got["team"] == "ml"
    status, upd, _ = await call(http, gw, "PATCH", f"/admin/users/{ann['id']}", {"role": "viewer", "name": "Ann B"})
    assert status == 200 and upd["role"] == "viewer" and upd["name"] == "Ann B"
    status, _, _ = await call(http, gw, "DELETE", f"/admin/users/{ann['id']}")
    assert status == 200
    status, data, _ = await call(http, gw, "GET", f"/admin/users/{ann['id']}")
    assert status == 404 and data["error"]["code"] == "user_not_found"
    await new_user(http, gw)  # the e-mail of a deleted user can be given again
    status, audit, text = await call(http, gw, "GET", "/admin/audit")
    actions = [a["action"] for a in audit["data"]]
    assert {"user.create", "user.update", "user.delete"} <= set(actions)
    assert PASSWORD not in text and "argon2" not in text


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x"}, "email"),
    ({"email": "not-an-email", "name": "x"}, "email"),
    ({"email": "a@example.com"}, "name"),
    ({"email": "a@example.com", "name": "x", "role": "owner"}, "role"),
    ({"email": "a@example.com", "name": "x", "password": "short"}, "password"),
    ({"email": "a@example.com", "name": "x", "limits": {"rpm": 0}}, "limits.rpm"),
    ({"email": "a@example.com", "name": "x", "budget": {"usd": -1}}, "budget.usd"),
    ({"email": "a@example.com", "name": "x", "limits": {"per_alias": {"nope": {"rpm": 1}}}},
     "limits.per_alias.nope"),
    ({"email": "a@example.com", "name": "x", "colour": "red"}, "colour"),
])
async def test_bad_input_is_422_naming_the_field(gw: GatewayServer, http: aiohttp.ClientSession,
                                                 body: dict[str, Any], field: str) -> None:
    status, data, text = await call(http, gw, "POST", "/admin/users", body)
    assert status == 422 and data["error"]["param"] == field, text


async def test_unknown_ids_duplicates_and_config_users(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        status, data, _ = await call(http, gw, method, "/admin/users/usr_0000000000000000", body)
        assert status == 404 and data["error"]["code"] == "user_not_found"
    ann = await new_user(http, gw)
    status, data, _ = await call(http, gw, "POST", "/admin/users", {"email": "ANN@example.com", "name": "Other"})
    assert status == 409 and data["error"]["code"] == "duplicate_email" and data["error"]["param"] == "email"
    await new_user(http, gw, email="zed@example.com")
    status, data, _ = await call(http, gw, "PATCH", f"/admin/users/{ann['id']}", {"email": "zed@example.com"})
    assert status == 409
    status, data, _ = await call(http, gw, "PATCH", "/admin/users/cfg:root@example.com", {"name": "x"})
    assert status == 409 and data["error"]["code"] == "read_only_user"
    status, data, _ = await call(http, gw, "PATCH", f"/admin/users/{ann['id']}", {"role": None})
    assert status == 422 and data["error"]["param"] == "role"
    status, data, _ = await call(http, gw, "POST", "/admin/keys", {"name": "k", "user_id": "usr_nobody"})
    assert status == 422 and data["error"]["param"] == "user_id"


async def test_key_given_to_a_user_and_what_disabling_and_deleting_do(gw: GatewayServer,
                                                                       http: aiohttp.ClientSession) -> None:
    ann = await new_user(http, gw)
    status, key, text = await call(http, gw, "POST", "/admin/keys", {"name": "anns", "user_id": ann["id"]})
    assert status == 201 and key["user_id"] == ann["id"] and key["team"] == "ml", text  # the user's team
    b = await sign_in(http, gw, email="ann@example.com", password=PASSWORD)
    assert (await b.call(http, "POST", "/v1/chat/completions", chat()))[0] == 200
    # disabling the user: their sessions end and their keys stop working
    status, _, _ = await call(http, gw, "PATCH", f"/admin/users/{ann['id']}", {"disabled": True})
    assert status == 200
    status, data = await b.call(http, "GET", "/ui/api/session")
    assert status == 401 and data["error"]["code"] == "not_signed_in"
    async with http.post(gw.base_url + "/chat/completions", json=chat(), headers=auth(key["key"])) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "key_disabled"
    status, data, _ = await call(http, gw, "PATCH", f"/admin/users/{ann['id']}", {"disabled": False})
    async with http.post(gw.base_url + "/chat/completions", json=chat(), headers=auth(key["key"])) as r:
        assert r.status == 200
    # a password change ends the sessions signed in with the old one
    b = await sign_in(http, gw, email="ann@example.com", password=PASSWORD)
    await call(http, gw, "PATCH", f"/admin/users/{ann['id']}", {"password": "another-password"})
    assert (await b.call(http, "GET", "/ui/api/session"))[0] == 401
    b = await sign_in(http, gw, email="ann@example.com", password="another-password")
    # deleting: the same
    status, _, _ = await call(http, gw, "DELETE", f"/admin/users/{ann['id']}")
    assert status == 200
    assert (await b.call(http, "GET", "/ui/api/session"))[0] == 401
    async with http.post(gw.base_url + "/chat/completions", json=chat(), headers=auth(key["key"])) as r:
        assert r.status == 401


async def test_admin_user_session_is_named_in_the_audit_log(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    await new_user(http, gw, email="boss@example.com", role="admin")
    b = await sign_in(http, gw, email="boss@example.com", password=PASSWORD)
    status, data = await b.call(http, "POST", "/admin/users", {"email": "new@example.com", "name": "New"})
    assert status == 201, data
    status, audit, _ = await call(http, gw, "GET", "/admin/audit?action=user.create")
    assert audit["data"][0]["actor"] == "user:boss@example.com@127.0.0.1"
    # a member is refused the admin API, whatever the method
    await new_user(http, gw, email="mem@example.com")
    m = await sign_in(http, gw, email="mem@example.com", password=PASSWORD)
    for method in ("GET", "POST"):
        status, data = await m.call(http, method, "/admin/users", {"email": "x@example.com", "name": "x"})
        assert status == 403 and data["error"]["code"] == "role_forbidden"
    assert ADMIN_KEY not in str(audit)
