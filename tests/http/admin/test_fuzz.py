"""Fuzzing the admin API (Hypothesis; the admin API has no OpenAPI document for Schemathesis yet): key payloads
for create / update / rotate, cache invalidation bodies, query strings of the read routes, ids that do not
exist. Never a 5xx, never a hang, never a traceback in a body; every error is OpenAI-format JSON."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.admission.conftest import ADMIN_KEY, admin, quota_config
from tests.conftest import GatewayFactory, GatewayServer
from tests.http.strategies import FUZZ, chat_bodies, dumps, json_values, key_fields, query_values

TIMEOUT = aiohttp.ClientTimeout(total=15)


@pytest.fixture
async def gw(gateway_factory: GatewayFactory) -> GatewayServer:
    cfg = quota_config(cache={"enabled": True})
    cfg["logging"] = {"requests": False}
    return await gateway_factory(cfg)


async def send(http: aiohttp.ClientSession, method: str, url: str, body: Any = None,
               params: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else dumps(body)
    headers = {**admin(), "Content-Type": "application/json"}
    async with http.request(method, url, data=data, params=params, headers=headers, timeout=TIMEOUT) as r:
        text = await r.text()
    assert r.status < 500, (method, url, params, body, r.status, text[:500])
    assert "Traceback" not in text and 'File "' not in text
    parsed = orjson.loads(text) if r.content_type == "application/json" else text
    if r.status >= 400:
        assert {"message", "type", "param", "code"} <= set(parsed["error"])
    return r.status, parsed


async def a_key(http: aiohttp.ClientSession, gw: GatewayServer) -> str:
    status, listed = await send(http, "GET", gw.url + "/admin/keys", params={"source": "db"})
    if listed["data"]:
        return str(listed["data"][0]["id"])
    status, created = await send(http, "POST", gw.url + "/admin/keys", {"name": "fuzz-target"})
    assert status == 201
    return str(created["id"])


@FUZZ
@given(create=key_fields | json_values, update=key_fields | json_values, rotate=json_values,
       other_id=st.text(max_size=20))
async def test_key_payloads(gw: GatewayServer, http: aiohttp.ClientSession, create: Any, update: Any, rotate: Any,
                            other_id: str) -> None:
    await send(http, "POST", gw.url + "/admin/keys", create)
    kid = await a_key(http, gw)
    await send(http, "PATCH", gw.url + f"/admin/keys/{kid}", update)
    await send(http, "POST", gw.url + f"/admin/keys/{kid}/rotate", rotate)
    for method in ("GET", "PATCH", "DELETE"):
        await send(http, method, gw.url + "/admin/keys/" + other_id.replace("/", "%2F").replace("?", "%3F"),
                   update if method == "PATCH" else None)


@FUZZ
@given(usage=st.dictionaries(st.sampled_from(["key", "user", "team", "provider", "alias", "status", "since", "until",
                                              "group_by", "format", "limit"]), query_values, max_size=5),
       audit=st.dictionaries(st.sampled_from(["limit", "since", "target", "action"]), query_values, max_size=3),
       alias=query_values, invalidate=chat_bodies(["demo"]))
async def test_read_routes_and_cache(gw: GatewayServer, http: aiohttp.ClientSession, usage: dict[str, str],
                                     audit: dict[str, str], alias: str, invalidate: Any) -> None:
    await send(http, "GET", gw.url + "/admin/usage", params=usage)
    await send(http, "GET", gw.url + "/admin/audit", params=audit)
    await send(http, "GET", gw.url + "/admin/budgets", params={k: v for k, v in usage.items() if k == "limit"})
    await send(http, "GET", gw.url + "/v1/usage", params=usage)
    await send(http, "DELETE", gw.url + "/admin/cache", params={"alias": alias})
    await send(http, "POST", gw.url + "/admin/cache/invalidate", invalidate)


def test_admin_key_is_the_fixture_key() -> None:
    assert admin() == {"Authorization": f"Bearer {ADMIN_KEY}"}
