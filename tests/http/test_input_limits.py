"""Hostile input (`listen.limits`) through the real server: nesting depth, number of messages and tools, the
size of one string, header size; each refused in OpenAI's format naming the limit, before any upstream call.
Image URLs go to providers as they are: the gateway never fetches them."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from proxy.config.listen import InputLimits
from proxy.core.errors import GatewayError
from proxy.http.limits import check_shape
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream, auth, base_config, serve

LIMITS = {"max_json_depth": 10, "max_messages": 5, "max_string_bytes": 1024, "max_tools": 3,
          "max_header_bytes": 2048}


def nested(depth: int) -> Any:
    """A value that adds `depth` levels of nesting."""
    value: Any = 1
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "up", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    return await gateway_factory(base_config(mock_upstream.url, listen={"limits": LIMITS},
                                             admin={"key": "sk-test-admin"}))


async def post(http: aiohttp.ClientSession, url: str, body: Any, key: str = DEV_KEY) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=orjson.dumps(body), headers={**auth(key), "Content-Type": "application/json"}) as r:
        return r.status, await r.json(content_type=None)


def assert_error(status: int, data: dict[str, Any], want_status: int, code: str, setting: str,
                 param: str | None = None) -> None:
    assert status == want_status, data
    err = data["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["code"] == code and f"listen.limits.{setting}" in err["message"], err
    if param is not None:
        assert err["param"] == param


async def test_each_limit_is_refused_naming_it(gw: GatewayServer, mock_upstream: MockUpstream,
                                               http: aiohttp.ClientSession) -> None:
    url = gw.base_url + "/chat/completions"
    # nesting: the body itself is level 1, metadata's outermost container 2, so nested(10) reaches 11
    status, data = await post(http, url, chat(metadata=nested(10)))
    assert_error(status, data, 400, "json_too_deep", "max_json_depth")
    assert data["error"]["param"].startswith("metadata")
    status, data = await post(http, url, chat(messages=[{"role": "user", "content": "x"}] * 6))
    assert_error(status, data, 400, "array_above_max_length", "max_messages", "messages")
    assert "maximum length 5" in data["error"]["message"] and "length 6" in data["error"]["message"]
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    status, data = await post(http, url, chat(tools=[tool] * 4))
    assert_error(status, data, 400, "array_above_max_length", "max_tools", "tools")
    status, data = await post(http, url, chat(messages=[{"role": "system", "content": "s"},
                                                        {"role": "user", "content": "é" * 600}]))
    assert_error(status, data, 400, "string_above_max_length", "max_string_bytes", "messages[1].content")
    status, data = await post(http, url, chat(metadata={"k" * 2000: 1}))  # an object key is a string too
    assert_error(status, data, 400, "string_above_max_length", "max_string_bytes")
    assert mock_upstream.calls == 0  # nothing reached the upstream
    # at the limits: served
    ok = chat(messages=[{"role": "user", "content": "é" * 500}] * 5, tools=[tool] * 3, metadata=nested(9))
    status, data = await post(http, url, ok)
    assert status == 200, data
    # the same limits hold for batch items, the embeddings body and admin payloads
    status, data = await post(http, gw.base_url + "/gateway/batch",
                              {"requests": [chat(), chat(messages=[{"role": "user", "content": "x"}] * 6)]})
    assert status == 200 and [r["status"] for r in data["results"]] == [200, 400]
    assert data["results"][1]["error"]["code"] == "array_above_max_length"
    status, data = await post(http, gw.base_url + "/embeddings", {"model": "up", "input": [nested(12)]})
    assert_error(status, data, 400, "json_too_deep", "max_json_depth")
    status, data = await post(http, gw.url + "/admin/keys", {"name": "deep", "metadata": nested(12)},
                              key="sk-test-admin")
    assert_error(status, data, 400, "json_too_deep", "max_json_depth")


async def test_header_size_limit_is_configurable(gw: GatewayServer, gateway_factory: GatewayFactory,
                                                 http: aiohttp.ClientSession) -> None:
    big = {"x-note": "n" * 3000}
    async with http.get(gw.base_url + "/models", headers={**auth(), **big}) as r:
        data = await r.json(content_type=None)
        assert_error(r.status, data, 431, "request_header_fields_too_large", "max_header_bytes")
        assert "2048" in data["error"]["message"]
    async with http.get(gw.base_url + "/models", headers={**auth(), "x-note": "n" * 1800}) as r:
        assert r.status == 200
    default = await gateway_factory(base_config())  # the default (8190) takes the 3000-byte header
    async with http.get(default.base_url + "/models", headers={**auth(), **big}) as r:
        assert r.status == 200


def test_defaults_are_safe() -> None:
    d = InputLimits()
    assert (d.max_json_depth, d.max_messages, d.max_tools, d.max_header_bytes) == (64, 2048, 128, 8190)
    assert d.max_string_bytes == 8 * 1024 * 1024


def test_shape_check_names_the_place_and_counts_utf8_bytes() -> None:
    limits = InputLimits(max_json_depth=4, max_string_bytes=300)
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    raw = orjson.dumps(body)
    with pytest.raises(GatewayError) as info:
        check_shape(raw, body, limits)
    assert info.value.param == "messages[0].content[0]" and info.value.status == 400
    body = {"s": "€" * 101}  # 101 characters, 303 UTF-8 bytes
    with pytest.raises(GatewayError) as info:
        check_shape(orjson.dumps(body), body, limits)
    assert info.value.code == "string_above_max_length" and info.value.param == "s"
    body = {"s": "e" * 290, "brackets": "[[[[[[{{{{{"}  # brackets inside strings only make the bound looser
    check_shape(orjson.dumps(body), body, limits)
    # a body over 16 KiB is walked instead of counted: still refused when too deep, accepted when not
    body = {"pad": ["x" * 200] * 100, "deep": nested(4)}
    with pytest.raises(GatewayError) as info:
        check_shape(orjson.dumps(body), body, InputLimits(max_json_depth=4))
    assert info.value.code == "json_too_deep" and info.value.param.startswith("deep")
    check_shape(orjson.dumps(body), body, InputLimits(max_json_depth=5))


@pytest.mark.parametrize("alias", ["up", "claude", "gem"])
async def test_image_urls_are_passed_on_never_fetched(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                                      http: aiohttp.ClientSession, alias: str) -> None:
    hits: list[str] = []

    async def image(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"\x89PNG", content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", image)
    image_server = await serve(app)
    cfg = base_config(mock_upstream.url)
    cfg["providers"]["anthropic"] = {"type": "anthropic", "base_url": mock_upstream.url + "/anthropic",
                                     "api_key": "sk-upstream"}
    cfg["providers"]["gemini"] = {"type": "gemini", "base_url": mock_upstream.url, "api_key": "sk-upstream"}
    cfg["models"]["claude"] = {"route": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}]}
    cfg["models"]["gem"] = {"route": [{"provider": "gemini", "model": "gemini-2.5-flash"}]}
    gw = await gateway_factory(cfg)
    url = image_server.url + "/cat.png"
    try:
        status, data = await post(http, gw.base_url + "/chat/completions", {"model": alias, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]})
        assert status == 200, data
        sent = mock_upstream.state.requests[-1]
        assert url in orjson.dumps(sent["body"]).decode()  # the provider got the URL itself
        assert hits == []  # and the gateway never fetched it
    finally:
        await image_server.close()


async def test_the_anthropic_messages_api_has_the_same_limits(gw: GatewayServer, mock_upstream: MockUpstream,
                                                              http: aiohttp.ClientSession) -> None:
    url = gw.url + "/v1/messages"
    msg = {"model": "up", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    cases = ((msg | {"metadata": nested(10)}, "max_json_depth"),
             (msg | {"messages": [{"role": "user", "content": "x"}] * 6}, "max_messages"),
             (msg | {"tools": [{"name": "f", "input_schema": {"type": "object"}}] * 4}, "max_tools"),
             (msg | {"messages": [{"role": "user", "content": "é" * 600}]}, "max_string_bytes"))
    for body, setting in cases:
        for path in ("", "/count_tokens"):
            status, data = await post(http, url + path, body if not path else
                                      {k: v for k, v in body.items() if k != "max_tokens"})
            assert status == 400 and data["type"] == "error", data  # Anthropic's shape
            assert data["error"]["type"] == "invalid_request_error" and setting in data["error"]["message"]
    assert mock_upstream.calls == 0
    status, data = await post(http, url, msg)
    assert status == 200 and data["type"] == "message", data


async def test_the_responses_api_counts_input_items(gw: GatewayServer, mock_upstream: MockUpstream,
                                                    http: aiohttp.ClientSession) -> None:
    items = [{"role": "user", "content": "x"}] * 6
    status, data = await post(http, gw.base_url + "/responses", {"model": "up", "input": items})
    assert_error(status, data, 400, "array_above_max_length", "max_messages", "input")
    assert mock_upstream.calls == 0
    status, data = await post(http, gw.base_url + "/responses", {"model": "up", "input": items[:5], "store": False})
    assert status == 200 and data["object"] == "response", data
