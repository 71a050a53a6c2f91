"""Helpers for console-session tests: sign in through the real server and call with the cookie (sent by
hand: the cookie jar of aiohttp ignores cookies from IP addresses, and Secure ones over http)."""

from __future__ import annotations

from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

import aiohttp

from tests.conftest import GatewayServer


@dataclass
class Browser:
    """A signed-in browser: the cookie's token, the CSRF token, the user as the gateway sent it."""

    gw: GatewayServer
    token: str
    csrf: str
    user: dict[str, Any]
    set_cookie: str

    def headers(self, csrf: bool = True) -> dict[str, str]:
        h = {"Cookie": f"gw_session={self.token}"}
        if csrf:
            h["x-csrf-token"] = self.csrf
        return h

    async def call(self, http: aiohttp.ClientSession, method: str, path: str, body: Any = None,
                   csrf: bool = True, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with http.request(method, self.gw.url + path, json=body,
                                headers={**self.headers(csrf), **(headers or {})}) as r:
            data = await r.json(content_type=None) if r.content_type == "application/json" else await r.text()
            return r.status, data


async def sign_in_raw(http: aiohttp.ClientSession, gw: GatewayServer, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.post(gw.url + "/ui/api/session", json=body, headers=headers or {}) as r:
        data = await r.json(content_type=None)
        return r.status, data, r


async def sign_in(http: aiohttp.ClientSession, gw: GatewayServer, headers: dict[str, str] | None = None,
                  **body: Any) -> Browser:
    status, data, r = await sign_in_raw(http, gw, body, headers)
    assert status == 200, data
    raw = r.headers.getone("Set-Cookie")
    cookie = SimpleCookie()
    cookie.load(raw)
    return Browser(gw, cookie["gw_session"].value, data["csrf_token"], data["user"], raw)
