"""Secrets never leak: a full mixed scenario through the real server (successes, streams, upstream errors with
retries, a wrong upstream key, wrong gateway keys, signed requests good and bad, every admin route, batch,
protocol errors) with distinctive secrets configured, then every output is searched for each of them:
the logs (structlog, debug level, aiohttp's bridged logger included), `/metrics`, every response (bodies and
headers, except the two answers whose job is to show a new secret once), the ledger's usage, audit,
budget-alert and last-use rows.

Extending it: a new output (e.g. webhook payloads) is one more entry in the dict `collect_outputs` returns;
a new kind of secret is one more entry in `Secrets.all()`.
"""

from __future__ import annotations

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
from proxy.config import LoggingConfig, MockBehaviour, parse_config
from proxy.ledger.schema import audit_log, budget_alerts, key_last_used, usage
from proxy.observability.logs import configure, flush
from tests.conftest import GatewayFactory, GatewayServer, MockUpstream, serve
from tests.http.test_protocol_errors import exchange


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
    }


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
    await rec.call(http, "GET", gw.url + "/metrics")


async def collect_outputs(gw: GatewayServer, rec: Recorder, logs: io.BytesIO,
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
        for table in (usage, audit_log, budget_alerts, key_last_used):
            rows = [dict(r._mapping) for r in await conn.execute(sa.select(table))]
            outputs[f"ledger {table.name}"] = orjson.dumps(rows, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    # webhook payloads go here once the gateway sends webhooks
    return outputs


async def test_no_secret_in_any_output(gateway_factory: GatewayFactory, tmp_path: Any,
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
        await scenario(s, rec, gw, upstream, http)
        outputs = await collect_outputs(gw, rec, logs, http)
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
    assert len(rec.shown_once) == 4 and len(outputs) > 40
    leaks = []
    for name, secret in s.all().items():
        needles = {secret, secret.split("CANARY")[-1], hashlib.sha256(secret.encode()).hexdigest()}
        for where, text in outputs.items():
            leaks += [f"{name} ({needle[:12]}...) in {where}" for needle in needles if needle in text]
    assert not leaks, "\n".join(leaks)

