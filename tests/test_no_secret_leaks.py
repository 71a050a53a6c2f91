"""Secrets never leak: a full mixed scenario through the real server (successes, streams, upstream errors with
retries, a wrong upstream key, wrong gateway keys, signed requests good and bad, every admin route, batch,
protocol errors, console sign-in with a password and calls with its session cookie, a webhook subscription
delivering to a receiver in the test) with distinctive secrets configured, then every output is searched for
each of them: the logs (structlog, debug level, aiohttp's bridged logger included), `/metrics`, every
response (bodies and headers, except the answers whose job is to show a new secret once), every webhook
delivery (body and headers), the ledger's usage, audit, budget-alert, last-use and users rows (a password
only as its Argon2id hash).

Extending it: a new output is one more entry in the dict `collect_outputs` returns; a new kind of secret is
one more entry in `Secrets.all()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import sqlalchemy as sa

from mockupstream.server import build_mock_app
from proxy.auth.signing import sign
from proxy.config import LoggingConfig, parse_config
from proxy.ledger.schema import audit_log, budget_alerts, key_last_used, usage
from proxy.ledger.schema import users as users_table
from proxy.observability.logs import configure, flush
from proxy.providers.settings import MockBehaviour
from proxy.users.passwords import hash_password
from tests.conftest import GatewayFactory, GatewayServer, MockUpstream, serve
from tests.http.console import sign_in
from tests.http.test_protocol_errors import exchange
from tests.webhooks.conftest import FAST, Receiver
from tests.webhooks.conftest import receiver as receiver  # a fixture, registered by import


def canary(prefix: str) -> str:
    return f"{prefix}-CANARY{secrets.token_hex(12)}"


@dataclass
class Secrets:
    upstream: str = field(default_factory=lambda: canary("sk-upstream"))
    wrong_upstream: str = field(default_factory=lambda: canary("sk-stale-upstream"))
    dev: str = field(default_factory=lambda: canary("sk-gw-dev"))
    signed: str = field(default_factory=lambda: canary("sk-gw-signed"))
    signing: str = field(default_factory=lambda: canary("sig"))
    admin_clear: str = field(default_factory=lambda: canary("sk-admin-clear"))
    admin_hashed: str = field(default_factory=lambda: canary("sk-admin-hashed"))
    password: str = field(default_factory=lambda: canary("pw"))
    wrong_password: str = field(default_factory=lambda: canary("pw-wrong"))
    created: dict[str, str] = field(default_factory=dict)  # secrets the admin API handed out (shown once)

    def all(self) -> dict[str, str]:
        fixed = {k: v for k, v in vars(self).items() if isinstance(v, str)}
        return {**fixed, **self.created}


@dataclass
class Recorder:
    """Every response the scenario got, as text (status, headers, body)."""

    shown_once: set[int] = field(default_factory=set)  # indexes of the create/rotate answers
    responses: list[str] = field(default_factory=list)

    async def call(self, http: aiohttp.ClientSession, method: str, url: str, *, key: str | None = None,
                   body: Any = None, headers: dict[str, str] | None = None, data: bytes | None = None,
                   shows_secret: bool = False) -> tuple[int, Any]:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        async with http.request(method, url, json=body if data is None else None, data=data, headers=h) as r:
            text = await r.text()
            if shows_secret:
                self.shown_once.add(len(self.responses))
            self.responses.append(f"{r.status} {dict(r.headers)} {text}")
            try:
                return r.status, orjson.loads(text)
            except orjson.JSONDecodeError:
                return r.status, text


def config(s: Secrets, upstream_url: str, tmp_path: Any) -> dict[str, Any]:
    up = upstream_url + "/v1"
    return {
        "providers": {
            "up": {"type": "openai", "base_url": up, "api_key": "${UPSTREAM_KEY}"},
            "stale": {"type": "openai", "base_url": up, "api_key": "${STALE_UPSTREAM_KEY}"},
            "anthropic": {"type": "anthropic", "base_url": upstream_url + "/anthropic", "api_key": "${UPSTREAM_KEY}"},
        },
        "models": {
            "up": {"route": [{"provider": "up", "model": "mock-1"}], "retry": {"attempts": 3, "backoff": "1ms"}},
            "stale": {"route": [{"provider": "stale", "model": "mock-1"}], "fallbacks": ["claude"]},
            "claude": {"route": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}]},
        },
        "keys": [{"name": "dev", "key": "${DEV_KEY}", "budget": {"usd": 0.0002, "period": "daily"}},
                 {"name": "signed", "key": "${SIGNED_KEY}", "signing": "required", "signing_secret": "${SIGNING}"}],
        "admin": {"keys": [{"name": "ops", "key": "${ADMIN_KEY}"},
                           {"name": "ci", "key_sha256": hashlib.sha256(s.admin_hashed.encode()).hexdigest()}]},
        "pricing": {"mock-1": {"input": 10.0, "output": 10.0}, "claude-sonnet-4-5": {"input": 1.0, "output": 1.0}},
        "cache": {"enabled": True},
        "logging": {"level": "debug", "format": "json", "requests": True},
        "database": {"url": f"sqlite:///{tmp_path}/leaks.db"},
        "users": [{"email": "ada@example.com", "name": "Ada", "role": "admin",
                   "password_hash": hash_password(s.password)}],
        "webhooks": FAST,
    }


async def subscribe(s: Secrets, rec: Recorder, gw: GatewayServer, receiver: Receiver,
                    http: aiohttp.ClientSession) -> None:
    """Every event type that carries keys, calls or budgets, to the receiver; its secret is shown once."""
    for _ in range(200):
        if gw.gateway.webhooks.registry.loaded:
            break
        await asyncio.sleep(0.05)
    events = ["invocation.completed", "invocation.failed", "budget.threshold", "budget.exceeded", "key.created",
              "key.rotated", "key.revoked"]
    status, sub = await rec.call(http, "POST", gw.url + "/admin/webhooks", key=s.admin_clear, shows_secret=True,
                                 body={"url": receiver.url, "events": events})
    assert status == 201, sub
    receiver.secrets.append(sub["secret"])
    s.created["webhook"] = sub["secret"]


async def console(s: Secrets, rec: Recorder, gw: GatewayServer, http: aiohttp.ClientSession) -> None:
    """A wrong password, a password sign-in, admin calls with the session cookie, sign-out."""
    async with http.post(gw.url + "/ui/api/session", json={"email": "ada@example.com",
                                                            "password": s.wrong_password}) as r:
        assert r.status == 401
        rec.responses.append(f"{r.status} {dict(r.headers)} {await r.text()}")
    browser = await sign_in(http, gw, email="ada@example.com", password=s.password)
    s.created["session cookie"], s.created["csrf token"] = browser.token, browser.csrf
    for method, path, body in (("GET", "/ui/api/session", None), ("GET", "/admin/keys", None),
                               ("POST", "/admin/keys", {"name": "from-console"}),
                               ("GET", "/admin/audit?limit=5", None), ("DELETE", "/ui/api/session", None)):
        # the new key's answer shows its secret once; the session's answer its CSRF token, to its holder
        status, answer = await rec.call(http, method, gw.url + path, body=body, headers=browser.headers(),
                                        shows_secret=body is not None or (path == "/ui/api/session" and method == "GET"))
        assert status in (200, 201, 204), (path, answer)
        if body is not None:
            s.created["console-created"] = answer["key"]


async def scenario(s: Secrets, rec: Recorder, gw: GatewayServer, upstream: MockUpstream,
                   http: aiohttp.ClientSession) -> None:
    v1 = gw.base_url
    chat = {"model": "up", "messages": [{"role": "user", "content": "hello"}]}
    # successes: JSON, stream, cache hit, embeddings, models, the key's own usage
    for body in (chat, {**chat, "stream": True}, chat):
        assert (await rec.call(http, "POST", v1 + "/chat/completions", key=s.dev, body=body))[0] == 200
    await rec.call(http, "POST", v1 + "/embeddings", key=s.dev, body={"model": "up", "input": "x"})
    await rec.call(http, "GET", v1 + "/models", key=s.dev)
    await rec.call(http, "GET", v1 + "/usage", key=s.dev)
    # upstream failures: 500s retried then 502, a stale upstream key (502, then a fallback), a broken stream
    upstream.configure(error_status=500)
    fresh = {**chat, "messages": [{"role": "user", "content": "uncached"}]}
    assert (await rec.call(http, "POST", v1 + "/chat/completions", key=s.dev, body=fresh))[0] == 502
    upstream.configure(error_status=None, cut_after=1)
    await rec.call(http, "POST", v1 + "/chat/completions", key=s.dev, body={**fresh, "stream": True})
    upstream.configure(cut_after=None)
    await rec.call(http, "POST", v1 + "/chat/completions", key=s.dev, body={**chat, "model": "stale"})
    await rec.call(http, "GET", gw.url + "/health/providers")
    # until over budget (0.02 cents: a few calls)
    for i in range(40):
        body = {**chat, "messages": [{"role": "user", "content": f"spend {i}"}]}
        if (await rec.call(http, "POST", v1 + "/chat/completions", key=s.dev, body=body))[0] == 429:
            break
    else:
        raise AssertionError("the budget never ran out")
    # wrong keys: unknown, a real key with a character changed, an admin key on the API, an API key on admin
    for wrong in ("sk-nobody", s.dev[:-1] + "x", s.admin_clear):
        await rec.call(http, "POST", v1 + "/chat/completions", key=wrong, body=chat)
    await rec.call(http, "GET", gw.url + "/admin/keys", key=s.dev)
    await rec.call(http, "GET", gw.url + "/admin/keys", key=s.admin_clear + "x")
    # signed requests: good, replayed, tampered, stale, unsigned
    raw = orjson.dumps(chat)
    ts = int(time.time())
    good = {"x-gateway-timestamp": str(ts), "x-gateway-signature": sign(s.signing, ts, "POST", "/v1/chat/completions",
                                                                        raw), "Content-Type": "application/json"}
    assert (await rec.call(http, "POST", v1 + "/chat/completions", key=s.signed, data=raw, headers=good))[0] == 200
    for hdrs, body in ((good, raw), (good, raw + b" "), ({**good, "x-gateway-timestamp": str(ts - 3600)}, raw),
                       ({"Content-Type": "application/json"}, raw)):
        assert (await rec.call(http, "POST", v1 + "/chat/completions", key=s.signed, data=body,
                               headers=hdrs))[0] == 401
    # every admin route, with both admin keys
    for admin_key in (s.admin_clear, s.admin_hashed):
        status, created = await rec.call(http, "POST", gw.url + "/admin/keys", key=admin_key, shows_secret=True,
                                         body={"name": f"svc-{len(s.created)}", "signing": "required",
                                               "budget": {"usd": 10}})
        assert status == 201, created
        s.created[f"created-{len(s.created)}"] = created["key"]
        s.created[f"created-signing-{len(s.created)}"] = created["signing_secret"]
        kid = created["id"]
        await rec.call(http, "GET", gw.url + "/admin/keys", key=admin_key)
        await rec.call(http, "GET", gw.url + f"/admin/keys/{kid}", key=admin_key)
        await rec.call(http, "PATCH", gw.url + f"/admin/keys/{kid}", key=admin_key, body={"team": "t", "limits": {
            "rpm": 5}, "budget": {"usd": 20}})
        await rec.call(http, "PATCH", gw.url + f"/admin/keys/{kid}", key=admin_key, body={"limits": {"rpm": -1}})
        status, rotated = await rec.call(http, "POST", gw.url + f"/admin/keys/{kid}/rotate", key=admin_key,
                                         body={"grace_seconds": 60}, shows_secret=True)
        assert status == 200
        s.created[f"rotated-{len(s.created)}"] = rotated["key"]
        ts = int(time.time())
        body = orjson.dumps({"requests": [chat, {**chat, "model": "claude"}]})
        path = "/v1/gateway/batch"
        signed = {"x-gateway-timestamp": str(ts), "x-gateway-signature": sign(created["signing_secret"], ts, "POST",
                                                                              path, body),
                  "Content-Type": "application/json"}
        assert (await rec.call(http, "POST", gw.url + path, key=rotated["key"], data=body, headers=signed))[0] == 200
        await rec.call(http, "POST", gw.url + path, key=created["key"], data=body, headers=signed)  # replayed
        for path in ("/admin/usage?group_by=key", "/admin/budgets", "/admin/audit?limit=1000",
                     "/admin/usage?format=csv"):
            assert (await rec.call(http, "GET", gw.url + path, key=admin_key))[0] == 200
        await rec.call(http, "POST", gw.url + "/admin/cache/invalidate", key=admin_key, body=chat)
        await rec.call(http, "DELETE", gw.url + "/admin/cache", key=admin_key)
        await rec.call(http, "DELETE", gw.url + f"/admin/keys/{kid}", key=admin_key)
    # protocol errors carrying a secret in an oversized header: answered without echoing it
    port = int(gw.url.rsplit(":", 1)[1])
    for secret in (s.dev, s.admin_clear):
        raw_req = f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\nX-Pad: ".encode() + (
            b"p" * 9000) + b"\r\n\r\n"
        status_line, headers, body = await exchange(port, raw_req)
        rec.responses.append(f"{status_line} {headers} {body.decode(errors='replace')}")
    await console(s, rec, gw, http)
    await rec.call(http, "GET", gw.url + "/metrics")


async def collect_outputs(gw: GatewayServer, rec: Recorder, logs: io.BytesIO, receiver: Receiver,
                          http: aiohttp.ClientSession) -> dict[str, str]:
    """Every place a secret could end up, as text: name -> content."""
    await gw.gateway.ledger_writer.flush()
    await gw.gateway.last_used.flush()
    flush()
    async with http.get(gw.url + "/metrics") as r:
        metrics = await r.text()
    outputs = {"logs": logs.getvalue().decode(errors="replace"), "metrics": metrics}
    for i, text in enumerate(rec.responses):
        if i not in rec.shown_once:
            outputs[f"response {i}"] = text
    engine = gw.gateway.ledger_store.engine
    async with engine.connect() as conn:
        for table in (usage, audit_log, budget_alerts, key_last_used, users_table):
            rows = [dict(r._mapping) for r in await conn.execute(sa.select(table))]
            outputs[f"ledger {table.name}"] = orjson.dumps(rows, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    # the key.* events come from the admin calls; invocation.* and budget.* from the calls
    await receiver.wait_for(lambda r: {"key.created", "key.rotated", "key.revoked", "invocation.completed",
                                       "invocation.failed", "budget.exceeded"} <= {d.payload["type"] for d in r.got})
    for i, d in enumerate(receiver.got):
        outputs[f"webhook {i}"] = f"{d.id} {d.timestamp} {d.signature} {d.body.decode(errors='replace')}"
    return outputs


async def test_no_secret_in_any_output(gateway_factory: GatewayFactory, tmp_path: Any, receiver: Receiver,
                                       http: aiohttp.ClientSession) -> None:
    s = Secrets()
    app = build_mock_app(MockBehaviour(), api_key=s.upstream)
    upstream_srv = await serve(app)
    upstream = MockUpstream(upstream_srv.url, upstream_srv.runner, app)
    logs = io.BytesIO()
    configure(LoggingConfig(level="debug", format="json"), stream=logs)
    env = {"UPSTREAM_KEY": s.upstream, "STALE_UPSTREAM_KEY": s.wrong_upstream, "DEV_KEY": s.dev,
           "SIGNED_KEY": s.signed, "SIGNING": s.signing, "ADMIN_KEY": s.admin_clear}
    try:
        gw = await gateway_factory(parse_config(config(s, upstream.url, tmp_path), env=env))
        rec = Recorder()
        await subscribe(s, rec, gw, receiver, http)
        await scenario(s, rec, gw, upstream, http)
        outputs = await collect_outputs(gw, rec, logs, receiver, http)
        await gw.close()  # shutdown lines too
        flush()
        outputs["logs"] = logs.getvalue().decode(errors="replace")
    finally:
        configure(LoggingConfig(format="json"))
        await upstream_srv.close()
    # the scenario did what it claims: errors, retries, refusals and admin calls all happened and were logged
    log_text = outputs["logs"]
    for expected in ('"status":502', '"status":401', '"status":429', "http_protocol_error", "upstream_error"):
        assert expected in log_text or expected in "".join(rec.responses), expected
    assert upstream.state.calls and sum(upstream.state.calls.values()) >= 5
    assert '"key.rotate"' in outputs["ledger audit_log"] and '"admin.auth_failed"' in outputs["ledger audit_log"]
    assert "ops@" in outputs["ledger audit_log"] and "ci@" in outputs["ledger audit_log"]
    assert len(rec.shown_once) == 7 and len(outputs) > 40 and all(d.verified for d in receiver.got)
    assert "user:ada@example.com@" in outputs["ledger audit_log"] and "$argon2id$" in outputs["ledger users"]
    leaks = []
    for name, secret in s.all().items():
        needles = {secret, secret.split("CANARY")[-1], hashlib.sha256(secret.encode()).hexdigest()}
        for where, text in outputs.items():
            leaks += [f"{name} ({needle[:12]}...) in {where}" for needle in needles if needle in text]
    assert not leaks, "\n".join(leaks)

