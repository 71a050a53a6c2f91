"""Authentication before validation: every route that needs a key answers 401 (no key, unknown key) or
403 (admin route, valid non-admin key) before it looks at the body. The routes are read from the real app's
router, so a route added later is covered without touching this test."""

from __future__ import annotations

import re

import aiohttp
import openai
import pytest
from aiohttp import web

from proxy.auth.authenticator import Authenticator
from tests.admission.conftest import ADMIN_KEY, chat, quota_config
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer

# public by design; every other route needs a key
PUBLIC: dict[str, str] = {
    "/healthz": "liveness probe for orchestrators, which hold no key",
    "/readyz": "readiness probe for orchestrators and load balancers, which hold no key",
    "/metrics": "Prometheus scrapes without a key; metrics carry no secrets",
    "/health/providers": "monitors poll provider health without a key; errors are redacted",
}
# the console's sign-in takes credentials in its body; the other /ui/api/* routes need the session cookie
SIGN_IN = ("POST", "/ui/api/session")
BAD_BODY = b'{"model": 5, "messages": "not json'
WRONG_KEY = "sk-not-a-key-of-this-gateway"


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> GatewayServer:
    # the failed-auth throttle is off here: this walk sends dozens of wrong keys from one address on purpose
    return await gateway_factory(quota_config(cache={"enabled": True}, ip_limits={"failed_auth_per_minute": 0}))


def routes(gw: GatewayServer) -> list[tuple[str, str]]:
    """(method, path) of every route, path parameters filled with a dummy."""
    out = []
    for route in gw.app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        out.append((route.method, re.sub(r"\{[^}]+\}", "dummy", canonical)))
    return sorted(set(out))


async def status_of(http: aiohttp.ClientSession, gw: GatewayServer, method: str, path: str,
                    key: str | None) -> tuple[int, dict[str, str | None] | None]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with http.request(method, gw.url + path, data=BAD_BODY, headers=headers) as r:
        if method == "HEAD" or r.status < 400:
            return r.status, None
        return r.status, (await r.json(content_type=None))["error"]


async def test_every_protected_route_authenticates_before_it_reads_the_body(
        gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    all_routes = routes(gw)
    paths = {p for _, p in all_routes}
    assert set(PUBLIC) <= paths, f"stale allow-list entries: {set(PUBLIC) - paths}"
    protected = [(m, p) for m, p in all_routes if p not in PUBLIC and (m, p) != SIGN_IN]
    assert ("POST", "/v1/gateway/batch") in protected and ("PATCH", "/admin/keys/dummy") in protected
    for method, path in protected:
        where = f"{method} {path}"
        if path.startswith("/ui/api/"):  # cookie only: a key header does not sign a browser in
            for key in (None, WRONG_KEY, DEV_KEY):
                status, err = await status_of(http, gw, method, path, key)
                assert status == 401 and (err is None or err["code"] == "not_signed_in"), where
            continue
        status, err = await status_of(http, gw, method, path, None)
        assert status == 401, where
        if path.startswith("/v1/messages"):  # Anthropic's error shape: a type, no code
            assert err is not None and err["type"] == "authentication_error", where
            assert (await status_of(http, gw, method, path, WRONG_KEY))[0] == 401, where
        else:
            assert err is None or (err["type"] == "authentication_error" and err["code"] == "missing_api_key"), where
            status, err = await status_of(http, gw, method, path, WRONG_KEY)
            assert status == 401, where
            assert err is None or err["code"] == "invalid_api_key", where
        is_admin = path.startswith("/admin/")
        if is_admin:
            status, err = await status_of(http, gw, method, path, DEV_KEY)
            assert status == 403, where
            assert err is None or err["code"] == "admin_required", where
        # the right key gets past authentication: whatever comes next is not a 401/403
        status, _ = await status_of(http, gw, method, path, ADMIN_KEY if is_admin else DEV_KEY)
        assert status not in (401, 403), where


async def test_public_routes_answer_without_a_key(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    for path in PUBLIC:
        async with http.get(gw.url + path) as r:
            assert r.status not in (401, 403), path


async def test_a_bad_body_with_a_valid_key_is_still_judged(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/gateway/batch"):
        status, err = await status_of(http, gw, "POST", path, DEV_KEY)
        assert status == 400 and err is not None and err["code"] == "invalid_json", path


async def test_a_model_the_key_may_not_use_is_still_403(gateway_factory: GatewayFactory) -> None:
    cfg = quota_config()
    cfg["keys"] = [{"name": "dev", "key": DEV_KEY, "models": ["other"]}]
    gw = await gateway_factory(cfg)
    with pytest.raises(openai.PermissionDeniedError) as exc:
        await gw.openai().chat.completions.create(**chat())
    assert exc.value.body["code"] == "model_not_allowed"  # type: ignore[index]


async def test_one_key_lookup_per_request(gw: GatewayServer, http: aiohttp.ClientSession,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat call and a whole batch each look the key up once (the items reuse the batch's key)."""
    calls = 0
    real = Authenticator.authenticate

    async def counting(self: Authenticator, request: web.Request) -> object:
        nonlocal calls
        calls += 1
        return await real(self, request)

    monkeypatch.setattr(Authenticator, "authenticate", counting)
    await gw.openai().chat.completions.create(**chat())
    assert calls == 1
    calls = 0
    async with http.post(gw.base_url + "/gateway/batch", json={"requests": [chat(text="a"), chat(text="b")]},
                         headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        results = (await r.json())["results"]
    assert [x["status"] for x in results] == [200, 200]
    assert calls == 1
