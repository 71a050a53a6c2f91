"""Bad input gets a clear 4xx in OpenAI's error format, never a 500 or a traceback."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import GatewayFactory, MockUpstream, auth, base_config


@pytest.fixture
async def gw(gateway_factory: GatewayFactory):  # type: ignore[no-untyped-def]
    cfg = base_config()
    cfg["listen"] = {"max_body_bytes": "2KiB"}
    return await gateway_factory(cfg)


async def post(http, gw, data, headers=None, path="/v1/chat/completions"):  # type: ignore[no-untyped-def]
    h = {**auth(), **(headers or {})}
    async with http.post(gw.url + path, data=data, headers=h) as r:
        body = await r.json(content_type=None)
        return r.status, body


@pytest.mark.parametrize(("data", "ctype", "status", "param", "needle"), [
    (b"{not json", "application/json", 400, None, "not valid JSON"),
    (b"", "application/json", 400, None, "empty"),
    (b"[1, 2]", "application/json", 400, None, "JSON object"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "application/json", 400, "model", "model"),
    (b'{"model": "demo"}', "application/json", 400, "messages", "messages"),
    (b'{"model": 5, "messages": []}', "application/json", 400, "model", "model"),
    (b'{"model": "demo", "messages": "hi"}', "application/json", 400, "messages", "messages"),
    (b'{"model": "demo", "messages": [{"content": "x"}]}', "application/json", 400, "messages[0].role", "role"),
    (b'{"model": "demo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
     "application/json", 400, "stream", "boolean"),
    (b'{"model": "demo", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}',
     "application/json", 400, "max_tokens", "integer"),
    (b'{"model": "demo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
     "application/json", 400, "max_tokens", "at least 1"),
    (b'{"model": "demo", "messages": [{"role": "user", "content": "x"}], "temperature": true}',
     "application/json", 400, "temperature", "number"),
    (b'{"model": "demo", "messages": [{"role": "user", "content": "x"}], "stream_options": {}}',
     "application/json", 400, "stream_options", "stream"),
    (b'{"model": "demo"}', "application/xml", 415, None, "application/json"),
])
async def test_bad_chat_requests(gw, http, data, ctype, status, param, needle) -> None:  # type: ignore[no-untyped-def]
    code, body = await post(http, gw, data, {"Content-Type": ctype})
    assert code == status
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert err["param"] == param
    assert needle in err["message"]


async def test_oversized_body_is_413(gw, http) -> None:  # type: ignore[no-untyped-def]
    big = b'{"model": "demo", "messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    code, body = await post(http, gw, big, {"Content-Type": "application/json"})
    assert code == 413
    assert body["error"]["code"] == "request_too_large"


async def test_oversized_chunked_body_is_413(gw, http) -> None:  # type: ignore[no-untyped-def]
    async def gen():  # type: ignore[no-untyped-def]
        yield b'{"model": "demo", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    async with http.post(gw.url + "/v1/chat/completions", data=gen(),
                         headers={**auth(), "Content-Type": "application/json"}) as r:
        assert r.status == 413
        assert (await r.json())["error"]["code"] == "request_too_large"


async def test_bad_embeddings_requests(gw, http) -> None:  # type: ignore[no-untyped-def]
    code, body = await post(http, gw, b'{"model": "demo"}', {"Content-Type": "application/json"},
                            path="/v1/embeddings")
    assert code == 400 and body["error"]["param"] == "input"
    code, body = await post(http, gw, b'{"model": "demo", "input": []}', {"Content-Type": "application/json"},
                            path="/v1/embeddings")
    assert code == 400 and body["error"]["param"] == "input"
    code, body = await post(http, gw, b'{"input": "x"}', {"Content-Type": "application/json"},
                            path="/v1/embeddings")
    assert code == 400 and body["error"]["param"] == "model"
    # OpenAI's shapes only (strings, token ids, arrays of token ids); anything else is a 400, not a 500
    for bad in (b"[null]", b'["a", 1]', b"[[1], []]", b"[1.5]", b"[true]", b'[{"a": 1}]'):
        code, body = await post(http, gw, b'{"model": "demo", "input": ' + bad + b"}",
                                {"Content-Type": "application/json"}, path="/v1/embeddings")
        assert code == 400 and body["error"]["param"] == "input", bad
    for good in (b'["a", "b"]', b"[1, 2, 3]", b"[[1, 2], [3]]"):
        code, body = await post(http, gw, b'{"model": "demo", "input": ' + good + b"}",
                                {"Content-Type": "application/json"}, path="/v1/embeddings")
        assert code == 200, (good, body)
    code, body = await post(http, gw, b'{"model": "demo", "input": "x", "dimensions": "8"}',
                            {"Content-Type": "application/json"}, path="/v1/embeddings")
    assert code == 400 and body["error"]["param"] == "dimensions"


async def test_unknown_path_and_method_are_json(gw, http) -> None:  # type: ignore[no-untyped-def]
    async with http.get(gw.url + "/v1/does-not-exist") as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "unknown_url"
    async with http.get(gw.url + "/v1/chat/completions") as r:
        assert r.status == 405
        assert (await r.json())["error"]["code"] == "method_not_allowed"


async def test_unexpected_bug_is_500_without_traceback(gw, http, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    async def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gw.gateway.pipeline, "chat", boom)
    code, body = await post(http, gw, b'{"model": "demo", "messages": [{"role": "user", "content": "x"}]}',
                            {"Content-Type": "application/json"})
    assert code == 500
    assert "secret internals" not in str(body) and "Traceback" not in str(body)
    assert body["error"]["code"] == "internal_error"


@pytest.mark.parametrize(("messages", "extra", "param", "code"), [
    ([{"role": "human", "content": "x"}], {}, "messages[0].role", "invalid_value"),
    ([{"role": "system", "content": "be brief"}, {"role": "model", "content": "x"}], {}, "messages[1].role",
     "invalid_value"),
    ([{"role": "user", "content": None}], {}, "messages[0].content", "invalid_type"),
    ([{"role": "system", "content": None}, {"role": "user", "content": "x"}], {}, "messages[0].content",
     "invalid_type"),
    ([{"role": "user"}], {}, "messages[0].content", "missing_required_parameter"),
    ([{"role": "user", "content": []}], {}, "messages[0].content", "empty_array"),
    ([{"role": "user", "content": 5}], {}, "messages[0].content", "invalid_type"),
    ([{"role": "user", "content": "x"}], {"n": 129}, "n", "integer_above_max_value"),
])
async def test_openai_rules_are_enforced_before_any_quota_or_upstream_call(
        gateway_factory: GatewayFactory, mock_upstream: MockUpstream, messages: list[dict[str, Any]],
        extra: dict[str, Any], param: str, code: str) -> None:
    cfg = base_config(mock_upstream.url)
    cfg["keys"][0]["limits"] = {"rpm": 1}
    gw = await gateway_factory(cfg)
    client = gw.openai()
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model="up", messages=messages, **extra)  # type: ignore[arg-type]
    assert exc.value.status_code == 400
    assert exc.value.param == param and exc.value.code == code
    assert mock_upstream.calls == 0
    # nothing was counted: the key's one request a minute is still there
    ok = await client.chat.completions.create(
        model="up", messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                              {"role": "assistant", "content": None, "tool_calls": [
                                  {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                              {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "r"}]}],
        n=1)
    assert ok.choices[0].message.content and mock_upstream.calls == 1


async def test_undecodable_body_is_400(gw, http) -> None:  # type: ignore[no-untyped-def]
    code, body = await post(http, gw, b"this is not gzip", {"Content-Type": "application/json",
                                                            "Content-Encoding": "gzip"})
    assert code == 400 and body["error"]["code"] == "invalid_http_request"
