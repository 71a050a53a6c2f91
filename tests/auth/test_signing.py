"""HMAC request signing (`signing: required`) through the real server: a signed request through the openai SDK
is served; stale, replayed, tampered and unsigned ones get a 401 saying which; a replay to another replica
sharing Redis is refused too; a key created by the admin API gets its signing secret once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from proxy.auth.signing import LocalReplayCache, sign
from proxy.core.errors import GatewayError
from tests.admission.conftest import ADMIN_KEY, admin, chat, quota_config
from tests.conftest import GatewayFactory, GatewayServer

SIGNED_KEY = "sk-test-signed"
SIGNING_SECRET = "whsec-test-signing-0123456789abcdef"
CHAT_PATH = "/v1/chat/completions"


def signed_config(**overrides: Any) -> dict[str, Any]:
    cfg = quota_config(**overrides)
    cfg["keys"].append({"name": "signed", "key": SIGNED_KEY, "signing": "required",
                        "signing_secret": "${SIGNING_SECRET}"})
    return cfg


def env_config(**overrides: Any) -> Any:
    from proxy.config import parse_config

    return parse_config(signed_config(**overrides), env={"SIGNING_SECRET": SIGNING_SECRET})


def headers(body: bytes, *, secret: str = SIGNING_SECRET, path: str = CHAT_PATH, method: str = "POST",
            ts: int | None = None, key: str = SIGNED_KEY) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
            "x-gateway-timestamp": str(ts), "x-gateway-signature": sign(secret, ts, method, path, body)}


async def post(http: aiohttp.ClientSession, gw: GatewayServer, body: bytes, hdrs: dict[str, str],
               path: str = CHAT_PATH) -> tuple[int, dict[str, Any]]:
    async with http.post(gw.url + path, data=body, headers=hdrs) as r:
        return r.status, await r.json(content_type=None)


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, tmp_path: Any) -> GatewayServer:
    cfg = env_config(database={"url": f"sqlite:///{tmp_path}/signing.db"})
    return await gateway_factory(cfg)


def signing_client(gw: GatewayServer, key: str = SIGNED_KEY, secret: str = SIGNING_SECRET) -> openai.AsyncOpenAI:
    """The official SDK with an HTTP client that signs every request it sends (as README shows)."""

    async def add_signature(request: Any) -> None:
        ts = int(time.time())
        request.headers["x-gateway-timestamp"] = str(ts)
        request.headers["x-gateway-signature"] = sign(secret, ts, request.method, request.url.raw_path.decode(),
                                                      request.content)

    http_client = openai.DefaultAsyncHttpxClient(event_hooks={"request": [add_signature]})
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0, http_client=http_client)


async def test_signed_requests_through_the_sdk(gw: GatewayServer) -> None:
    client = signing_client(gw)
    r = await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "signed"}])
    assert r.choices[0].message.content
    chunks = [c async for c in await client.chat.completions.create(
        model="demo", stream=True, messages=[{"role": "user", "content": "signed stream"}])]
    assert chunks
    assert "demo" in [m.id for m in (await client.models.list()).data]
    emb = await client.embeddings.create(model="demo", input="signed")
    assert emb.data[0].embedding
    # the same key without signing is refused, saying what to send
    with pytest.raises(openai.AuthenticationError) as info:
        await gw.openai(SIGNED_KEY).chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "signature_required" and "x-gateway-signature" in info.value.message
    # keys without `signing` are untouched
    r = await gw.openai().chat.completions.create(model="demo", messages=[{"role": "user", "content": "plain"}])
    assert r.choices[0].message.content


async def test_the_signature_is_the_documented_hmac(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    body = orjson.dumps(chat())
    ts = int(time.time())
    message = f"{ts}.POST.{CHAT_PATH}.{hashlib.sha256(body).hexdigest()}".encode()
    sig = "v1=" + hmac.new(SIGNING_SECRET.encode(), message, hashlib.sha256).hexdigest()
    status, data = await post(http, gw, body, {"Authorization": f"Bearer {SIGNED_KEY}", "x-gateway-timestamp": str(ts),
                                               "x-gateway-signature": sig, "Content-Type": "application/json"})
    assert status == 200, data


async def test_stale_timestamps_outside_the_window(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    body = orjson.dumps(chat())
    for ts in (int(time.time()) - 301 - 5, int(time.time()) + 400):
        status, data = await post(http, gw, body, headers(body, ts=ts))
        assert status == 401 and data["error"]["code"] == "signature_expired", data
        assert "5-minute window" in data["error"]["message"]
    status, _ = await post(http, gw, body, headers(body, ts=int(time.time()) - 200))
    assert status == 200  # within the window


async def test_replay_is_refused(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    body = orjson.dumps(chat())
    h = headers(body)
    assert (await post(http, gw, body, h))[0] == 200
    status, data = await post(http, gw, body, h)
    assert status == 401 and data["error"]["code"] == "signature_replayed"
    assert "replay" in data["error"]["message"]


async def test_tampered_requests_and_missing_headers(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    body = orjson.dumps(chat(text="pay 10"))
    h = headers(body)
    cases = [
        (orjson.dumps(chat(text="pay 1000")), h, CHAT_PATH),  # body changed
        (body, h, "/chat/completions"),  # path changed (the same route without /v1)
        (body, headers(body, secret="not-the-secret-0123456789"), CHAT_PATH),  # wrong secret
        (body, headers(body, path="/v1/embeddings"), CHAT_PATH),  # signed for another path
        (body, headers(body, method="GET"), CHAT_PATH),  # signed for another method
        (body, {**h, "x-gateway-signature": "sha256=" + h["x-gateway-signature"][3:]}, CHAT_PATH),  # no v1=
        (body, {**h, "x-gateway-timestamp": str(int(h["x-gateway-timestamp"]) + 1)}, CHAT_PATH),  # timestamp moved
    ]
    for i, (sent, hdrs, path) in enumerate(cases):
        status, data = await post(http, gw, sent, hdrs, path)
        assert status == 401 and data["error"]["code"] == "invalid_signature", (i, data)
        assert "does not match" in data["error"]["message"]
    for drop in ("x-gateway-timestamp", "x-gateway-signature"):
        status, data = await post(http, gw, body, {k: v for k, v in h.items() if k != drop})
        assert status == 401 and data["error"]["code"] == "signature_required"
    status, data = await post(http, gw, body, {**h, "x-gateway-timestamp": "yesterday"})
    assert status == 401 and "unix seconds" in data["error"]["message"]
    # the untampered request still goes through once (the failures above did not burn its signature)
    assert (await post(http, gw, body, h))[0] == 200


async def test_get_routes_and_batch_are_signed_too(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    async with http.get(gw.url + "/v1/usage?limit=1", headers=headers(b"", method="GET", path="/v1/usage?limit=1")) as r:
        assert r.status == 200, await r.text()
    async with http.get(gw.url + "/v1/usage?limit=2", headers=headers(b"", method="GET", path="/v1/usage?limit=1")) as r:
        assert r.status == 401  # the query string is signed
    async with http.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {SIGNED_KEY}"}) as r:
        assert r.status == 401
    body = orjson.dumps({"requests": [chat(), chat(text="two")]})
    status, data = await post(http, gw, body, headers(body, path="/v1/gateway/batch"), "/v1/gateway/batch")
    assert status == 200 and [x["status"] for x in data["results"]] == [200, 200]
    status, data = await post(http, gw, body, headers(body), "/v1/gateway/batch")
    assert status == 401 and data["error"]["code"] == "invalid_signature"


async def test_two_replicas_on_one_redis_refuse_a_replay(gateway_factory: GatewayFactory, redis_url: str,
                                                         tmp_path: Any, http: aiohttp.ClientSession) -> None:
    cfg = env_config(redis={"url": redis_url}, database={"url": f"sqlite:///{tmp_path}/replicas.db"})
    a, b = await gateway_factory(cfg), await gateway_factory(cfg)
    body = orjson.dumps(chat())
    h = headers(body)
    assert (await post(http, a, body, h))[0] == 200
    status, data = await post(http, b, body, h)
    assert status == 401 and data["error"]["code"] == "signature_replayed"
    # and concurrently: of the same signed request sent to both at once, exactly one is served
    body = orjson.dumps(chat(text="race"))
    h = headers(body)
    results = await asyncio.gather(*(post(http, gw, body, h) for gw in (a, b, a, b)))
    assert sorted(s for s, _ in results) == [200, 401, 401, 401]


async def test_admin_created_key_gets_its_signing_secret_once(gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    async with http.post(gw.url + "/admin/keys", json={"name": "svc", "signing": "required"}, headers=admin()) as r:
        created = await r.json()
        assert r.status == 201, created
    secret, signing_secret = created["key"], created["signing_secret"]
    assert created["signing"] == "required" and signing_secret != secret
    client = signing_client(gw, secret, signing_secret)
    r = await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "db key"}])
    assert r.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        await gw.openai(secret).chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    for path in ("/admin/keys", f"/admin/keys/{created['id']}", "/admin/audit"):
        async with http.get(gw.url + path, headers=admin()) as r:
            text = await r.text()
            assert r.status == 200 and signing_secret not in text and "signing_secret" not in text
    async with http.get(gw.url + f"/admin/keys/{created['id']}", headers=admin()) as r:
        assert (await r.json())["signing"] == "required"
    async with http.post(gw.url + "/admin/keys", json={"name": "bad", "signing": "sometimes"},
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
        assert r.status == 422 and (await r.json())["error"]["param"] == "signing"


def test_config_signing_needs_a_secret() -> None:
    from proxy.config import ConfigError, parse_config

    cfg = signed_config()
    with pytest.raises(ConfigError, match="signing_secret"):
        parse_config(cfg, env={})  # ${SIGNING_SECRET} unset: refused, not a key that accepts anything
    cfg["keys"][1] = {"name": "x", "key": "sk-x", "signing_secret": "0123456789abcdef0123"}
    with pytest.raises(ConfigError, match="only used with `signing: required`"):
        parse_config(cfg, env={})


def test_local_replay_cache_forgets_after_its_ttl_and_refuses_when_full() -> None:
    now = [0.0]
    cache = LocalReplayCache(ttl=600, max_entries=2, clock=lambda: now[0])
    assert cache.first_use("a") and not cache.first_use("a")
    assert cache.first_use("b")
    with pytest.raises(GatewayError) as info:  # full of live entries: refuse rather than forget one
        cache.first_use("c")
    assert info.value.status == 503
    now[0] = 601.0
    assert cache.first_use("a") and cache.first_use("c")  # expired entries left


async def test_embeddings_and_the_anthropic_messages_api_are_signed_too(gw: GatewayServer,
                                                                        http: aiohttp.ClientSession) -> None:
    model = chat()["model"]
    emb = orjson.dumps({"model": model, "input": "hello"})
    count = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    msg, count_body = orjson.dumps({**count, "max_tokens": 16}), orjson.dumps(count)
    for path, body in (("/v1/embeddings", emb), ("/v1/messages", msg), ("/v1/messages/count_tokens", count_body)):
        status, data = await post(http, gw, body, headers(body, path=path), path)
        assert status == 200, (path, data)
        unsigned = {"Authorization": f"Bearer {SIGNED_KEY}", "Content-Type": "application/json"}
        status, data = await post(http, gw, body, unsigned, path)
        assert status == 401, (path, data)
        status, data = await post(http, gw, body + b" ", headers(body, path=path), path)  # the body is signed
        assert status == 401, (path, data)
        assert "signature" in str(data)
