"""Nothing to fingerprint: no response names Python, aiohttp or a version in a `Server` header (or any other):
JSON answers, SSE streams, errors, unknown paths, protocol errors answered by serving.py, /metrics."""

from __future__ import annotations

import aiohttp

from tests.conftest import GatewayFactory, GatewayServer, auth, base_config
from tests.http.test_protocol_errors import exchange

ADMIN = "sk-test-admin"


def assert_anonymous(headers: dict[str, str], what: str) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "server" not in lowered, (what, lowered.get("server"))
    for value in lowered.values():
        assert "aiohttp" not in value.lower() and "python" not in value.lower(), (what, value)


async def test_no_server_header_on_any_response(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw: GatewayServer = await gateway_factory(base_config(admin={"key": ADMIN}))
    chat = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    requests = [
        ("POST", "/v1/chat/completions", chat, auth()),
        ("POST", "/v1/chat/completions", {**chat, "stream": True}, auth()),
        ("POST", "/v1/chat/completions", chat, auth("sk-wrong")),
        ("POST", "/v1/chat/completions", {"model": "demo"}, auth()),
        ("GET", "/v1/models", None, auth()),
        ("GET", "/nowhere", None, {}),
        ("DELETE", "/v1/chat/completions", None, auth()),
        ("GET", "/metrics", None, {}),
        ("GET", "/healthz", None, {}),
        ("GET", "/readyz", None, {}),
        ("GET", "/admin/keys", None, auth(ADMIN)),
        ("POST", "/v1/gateway/batch", {"requests": [chat]}, auth()),
    ]
    for method, path, body, headers in requests:
        async with http.request(method, gw.url + path, json=body, headers=headers) as r:
            await r.read()
            assert_anonymous(dict(r.headers), f"{method} {path} -> {r.status}")
    port = int(gw.url.rsplit(":", 1)[1])
    for raw in (b"GET /v1/models HTTP/1.1 junk\r\nHost: x\r\n\r\n",
                b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"):
        status_line, headers, _ = await exchange(port, raw)
        assert status_line.split(" ")[1] in ("400", "431")
        assert_anonymous(headers, status_line)
