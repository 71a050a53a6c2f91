"""Console sign-in through the real server: e-mail + password, API key, admin key; the cookie's flags; CSRF;
expiry and sign-out; the failed sign-in throttle; a cookie never overrides a key header."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from proxy.users.passwords import hash_password
from tests.admission.conftest import ADMIN_KEY, admin, chat, quota_config
from tests.admission.conftest import redis_url as redis_url  # the fixture
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, auth, free_port
from tests.http.console import sign_in, sign_in_raw

PASSWORD = "correct horse battery"
HASH = hash_password(PASSWORD)


def console_config(**overrides: Any) -> dict[str, Any]:
    cfg = quota_config(users=[
        {"email": "Ada@Example.com", "name": "Ada", "team": "ml", "role": "admin", "password_hash": HASH},
        {"email": "bob@example.com", "name": "Bob", "role": "member", "password_hash": HASH},
        {"email": "vic@example.com", "name": "Vic", "role": "viewer", "password_hash": HASH},
        {"email": "nopw@example.com", "name": "No Password", "role": "member"},
    ])
    cfg["keys"].append({"name": "bobs", "key": "sk-test-bob", "user_id": "bob@example.com"})
    cfg["keys"].append({"name": "vics", "key": "sk-test-vic", "user_id": "vic@example.com"})
    cfg.update(overrides)
    return cfg


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> GatewayServer:
    return await gateway_factory(console_config())


async def test_password_sign_in_sets_a_strict_httponly_cookie_and_admin_reaches_admin_api(
        gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    b = await sign_in(http, gw, email="ada@example.com", password=PASSWORD)
    assert b.user == {"id": "cfg:ada@example.com", "email": "ada@example.com", "name": "Ada", "team": "ml",
                      "role": "admin"}
    flags = [p.strip().lower() for p in b.set_cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain http, no trusted proxy
    assert PASSWORD not in b.set_cookie and len(b.token) >= 40
    status, data = await b.call(http, "GET", "/ui/api/session")
    assert status == 200 and data["user"]["role"] == "admin" and data["csrf_token"] == b.csrf
    status, data = await b.call(http, "GET", "/admin/users")
    assert status == 200 and {u["email"] for u in data["data"]} >= {"ada@example.com", "bob@example.com"}
    assert all("password_hash" not in u for u in data["data"])


async def test_wrong_password_unknown_user_and_no_password_are_all_401(gw: GatewayServer,
                                                                       http: aiohttp.ClientSession) -> None:
    for body in ({"email": "ada@example.com", "password": "wrong password"},
                 {"email": "nobody@example.com", "password": PASSWORD},
                 {"email": "nopw@example.com", "password": PASSWORD},
                 {"api_key": "sk-not-a-key"}):
        status, data, r = await sign_in_raw(http, gw, body)
        assert status == 401 and data["error"]["code"] == "invalid_credentials", (body, data)
        assert "Set-Cookie" not in r.headers
    status, data, _ = await sign_in_raw(http, gw, {"email": "ada@example.com"})
    assert status == 422 and data["error"]["param"] == "body" and "password" in data["error"]["message"]


async def test_sign_out_needs_csrf_and_revokes_the_session(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    b = await sign_in(http, gw, email="bob@example.com", password=PASSWORD)
    status, data = await b.call(http, "DELETE", "/ui/api/session", csrf=False)
    assert status == 403 and data["error"]["code"] == "csrf_failed"
    status, data = await b.call(http, "DELETE", "/ui/api/session", headers={"x-csrf-token": "forged"})
    assert status == 403 and data["error"]["code"] == "csrf_failed"
    async with http.delete(gw.url + "/ui/api/session", headers=b.headers()) as r:
        assert r.status == 204
        assert "gw_session=" in r.headers["Set-Cookie"]  # cleared in the browser
    status, data = await b.call(http, "GET", "/ui/api/session")
    assert status == 401 and data["error"]["code"] == "not_signed_in"
    status, _ = await b.call(http, "GET", "/v1/models")
    assert status == 401


async def test_api_key_session_acts_with_that_key_and_needs_csrf_to_post(gw: GatewayServer,
                                                                         http: aiohttp.ClientSession) -> None:
    b = await sign_in(http, gw, api_key=DEV_KEY)
    assert b.user == {"id": "key:cfg:dev", "email": None, "name": "dev", "team": None, "role": "member"}
    status, data = await b.call(http, "POST", "/v1/chat/completions", chat(), csrf=False)
    assert status == 403 and data["error"]["code"] == "csrf_failed"
    status, data = await b.call(http, "POST", "/v1/chat/completions", chat(text="from the console"))
    assert status == 200 and data["choices"][0]["message"]["content"]
    status, data = await b.call(http, "GET", "/v1/models")
    assert status == 200 and data["data"]
    status, data = await b.call(http, "GET", "/admin/keys")
    assert status == 403 and data["error"]["code"] == "role_forbidden"
    status, data = await b.call(http, "GET", "/ui/api/me/keys")
    assert status == 200 and [k["id"] for k in data["data"]] == ["cfg:dev"]
    status, data = await b.call(http, "POST", "/ui/api/me/keys", {"name": "mine"})
    assert status == 403  # a key session has no user to own a new key
    await asyncio.sleep(0)
    status, data = await b.call(http, "GET", "/ui/api/me/usage")
    assert status == 200 and data["usage"]["calls"] == 1 and data["recent"][0]["alias"] == "demo"


async def test_admin_key_session_is_admin_and_its_writes_need_csrf(gw: GatewayServer,
                                                                   http: aiohttp.ClientSession) -> None:
    b = await sign_in(http, gw, api_key=ADMIN_KEY)
    assert b.user["id"] == "admin:admin" and b.user["role"] == "admin"
    status, data = await b.call(http, "POST", "/admin/keys", {"name": "from-console"}, csrf=False)
    assert status == 403 and data["error"]["code"] == "csrf_failed"
    status, data = await b.call(http, "POST", "/admin/keys", {"name": "from-console"})
    assert status == 201 and data["key"].startswith("sk-")
    status, data = await b.call(http, "GET", "/admin/audit?action=key.create")
    assert status == 200 and data["data"][0]["actor"].startswith("admin@")
    # the playground needs a key: an admin-key session has none
    status, data = await b.call(http, "POST", "/v1/chat/completions", chat())
    assert status == 403 and data["error"]["code"] == "no_key"


async def test_a_key_header_ignores_the_cookie(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    b = await sign_in(http, gw, api_key=ADMIN_KEY)
    status, data = await b.call(http, "GET", "/admin/keys", headers=auth(DEV_KEY))
    assert status == 403 and data["error"]["code"] == "admin_required"
    status, data = await b.call(http, "GET", "/v1/models", headers=auth("sk-wrong"))
    assert status == 401 and data["error"]["code"] == "invalid_api_key"


async def test_viewer_sees_own_usage_only(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    b = await sign_in(http, gw, email="vic@example.com", password=PASSWORD)
    assert b.user["role"] == "viewer"
    for method, path, body in (("GET", "/admin/usage", None), ("GET", "/admin/keys", None),
                               ("POST", "/admin/keys", {"name": "x"}), ("GET", "/ui/api/me/keys", None),
                               ("POST", "/ui/api/me/keys", {"name": "x"}),
                               ("POST", "/v1/chat/completions", chat())):
        status, data = await b.call(http, method, path, body)
        assert status == 403, (path, data)
    status, data = await b.call(http, "GET", "/ui/api/me/usage")
    assert status == 200 and data["user"]["email"] == "vic@example.com"


async def test_member_password_session_uses_own_key_and_sees_only_own_keys(
        gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    b = await sign_in(http, gw, email="bob@example.com", password=PASSWORD)
    assert b.user["role"] == "member"
    status, data = await b.call(http, "GET", "/ui/api/me/keys")
    assert status == 200 and [k["name"] for k in data["data"]] == ["bobs"]
    status, created = await b.call(http, "POST", "/ui/api/me/keys", {"name": "bob-2", "models": ["demo"]})
    assert status == 201 and created["key"].startswith("sk-") and created["user_id"] == "cfg:bob@example.com"
    status, data = await b.call(http, "GET", "/ui/api/me/keys")
    assert [k["name"] for k in data["data"]] == ["bobs", "bob-2"]
    assert all("key" not in k and "key_sha256" not in k for k in data["data"])
    status, _ = await b.call(http, "POST", "/v1/chat/completions", chat())  # acts with a key of Bob's
    assert status == 200
    async with http.post(gw.base_url + "/chat/completions", json=chat(), headers=auth(created["key"])) as r:
        assert r.status == 200
    status, usage = await b.call(http, "GET", "/ui/api/me/usage")
    assert status == 200 and usage["usage"]["calls"] == 2  # across both of Bob's keys, nobody else's
    assert {c["alias"] for c in usage["recent"]} == {"demo"} and "total_tokens" in usage["recent"][0]


async def test_secure_flag_only_over_tls_from_a_trusted_proxy(gateway_factory: GatewayFactory,
                                                              http: aiohttp.ClientSession) -> None:
    plain = await gateway_factory(console_config())
    b = await sign_in(http, plain, headers={"X-Forwarded-Proto": "https"}, api_key=DEV_KEY)
    assert "secure" not in b.set_cookie.lower()  # the peer is no trusted proxy: its header proves nothing
    proxied = await gateway_factory(console_config(listen={"trusted_proxies": ["127.0.0.1"]}))
    b = await sign_in(http, proxied, headers={"X-Forwarded-Proto": "https"}, api_key=DEV_KEY)
    assert "secure" in [p.strip().lower() for p in b.set_cookie.split(";")]
    b = await sign_in(http, proxied, api_key=DEV_KEY)
    assert "secure" not in b.set_cookie.lower()


async def test_sessions_expire(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(console_config(console={"session_ttl": "1s"}))
    b = await sign_in(http, gw, email="bob@example.com", password=PASSWORD)
    assert (await b.call(http, "GET", "/ui/api/session"))[0] == 200
    await asyncio.sleep(1.2)
    status, data = await b.call(http, "GET", "/ui/api/session")
    assert status == 401 and data["error"]["code"] == "not_signed_in"


async def test_failed_sign_ins_are_throttled_per_account_and_per_ip(gateway_factory: GatewayFactory,
                                                                    http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(console_config(console={"failed_signins_per_account": 3, "failed_signins_per_ip": 5}))
    for _ in range(3):
        status, _, _ = await sign_in_raw(http, gw, {"email": "bob@example.com", "password": "nope nope"})
        assert status == 401
    status, data, r = await sign_in_raw(http, gw, {"email": "bob@example.com", "password": PASSWORD})
    assert status == 429 and int(r.headers["Retry-After"]) >= 1  # even the right password: the account waits
    assert data["error"]["code"] == "rate_limit_exceeded"
    # other accounts from this IP still work until the IP's own limit
    await sign_in(http, gw, email="ada@example.com", password=PASSWORD)
    for email in ("x1@example.com", "x2@example.com"):
        status, _, _ = await sign_in_raw(http, gw, {"email": email, "password": "nope nope"})
        assert status == 401
    status, data, r = await sign_in_raw(http, gw, {"email": "ada@example.com", "password": PASSWORD})
    assert status == 429 and "client IP" in data["error"]["message"]
    # the API itself is not affected by the console throttle
    async with http.get(gw.url + "/admin/keys", headers=admin()) as resp:
        assert resp.status == 200


async def test_sessions_are_shared_by_replicas_and_revoked_on_all_at_once(
        gateway_factory: GatewayFactory, http: aiohttp.ClientSession, redis_url: str, tmp_path: Any) -> None:
    cfg = console_config(redis={"url": redis_url}, database={"url": f"sqlite:///{tmp_path}/shared.db"})
    a = await gateway_factory(cfg, port=free_port())
    b = await gateway_factory(cfg, port=free_port())
    signed = await sign_in(http, a, email="bob@example.com", password=PASSWORD)
    on_b = type(signed)(b, signed.token, signed.csrf, signed.user, signed.set_cookie)  # the same browser, at B
    status, data = await on_b.call(http, "GET", "/ui/api/session")
    assert status == 200 and data["user"]["email"] == "bob@example.com"  # B knows it (and caches it now)
    async with http.delete(a.url + "/ui/api/session", headers=signed.headers()) as r:
        assert r.status == 204
    # B's cache holds the session for 30 s with Redis: only the pub/sub message can have ended it this fast
    deadline = asyncio.get_running_loop().time() + 2
    while (await on_b.call(http, "GET", "/ui/api/session"))[0] != 401:
        assert asyncio.get_running_loop().time() < deadline, "revocation did not reach the other replica"
        await asyncio.sleep(0.02)
