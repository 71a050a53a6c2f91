"""The official `openai` SDK pointed at the gateway works as a drop-in base_url."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import DEV_KEY, GatewayFactory, base_config


@pytest.fixture
async def gw(gateway_factory: GatewayFactory):  # type: ignore[no-untyped-def]
    cfg = base_config()
    cfg["keys"].append({"name": "limited", "key": "sk-limited", "models": ["other-*"]})
    return await gateway_factory(cfg)


async def test_chat_non_stream(gw) -> None:  # type: ignore[no-untyped-def]
    client = gw.openai()
    resp = await client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "hello gateway world"}])
    completion = resp.parse()
    assert completion.choices[0].message.content == "hello gateway world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "mock-1"  # what the upstream said, not the alias
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 3)
    assert resp.headers["x-gateway-provider"] == "mock"
    assert resp.headers["x-gateway-upstream-model"] == "mock-1"
    assert float(resp.headers["x-gateway-latency-ms"]) >= 0
    assert len(resp.headers["x-request-id"]) >= 16


async def test_chat_stream_text_and_framing(gw, http) -> None:  # type: ignore[no-untyped-def]
    client = gw.openai()
    stream = await client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "one two three"}], stream=True)
    parts, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert "".join(parts) == "one two three"
    assert finish == "stop"
    assert usage is None  # not asked for

    # raw framing: `data: {...}\n\n` events ending with `data: [DONE]`
    async with http.post(gw.base_url + "/chat/completions", headers={"Authorization": f"Bearer {DEV_KEY}"},
                         json={"model": "demo", "stream": True,
                               "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = (await r.read()).decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[:-1])


async def test_chat_stream_include_usage(gw) -> None:  # type: ignore[no-untyped-def]
    stream = await gw.openai().chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "a b c d"}], stream=True,
        stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.prompt_tokens == 4 and last.usage.completion_tokens == 4


async def test_models_list_respects_key(gw) -> None:  # type: ignore[no-untyped-def]
    models = [m.id async for m in gw.openai().models.list()]
    assert models == ["demo"]
    assert [m.id async for m in gw.openai(key="sk-limited").models.list()] == []
    model = await gw.openai().models.retrieve("demo")
    assert model.id == "demo"
    with pytest.raises(openai.NotFoundError):
        await gw.openai().models.retrieve("nope")


async def test_embeddings(gw) -> None:  # type: ignore[no-untyped-def]
    resp = await gw.openai().embeddings.create(model="demo", input=["alpha beta", "gamma"])
    assert [d.index for d in resp.data] == [0, 1]
    assert len(resp.data[0].embedding) == 8
    assert resp.usage.prompt_tokens == 3
    single = await gw.openai().embeddings.create(model="demo", input="alpha beta")
    assert single.data[0].embedding == resp.data[0].embedding  # deterministic


async def test_errors_surface_as_sdk_exceptions(gw) -> None:  # type: ignore[no-untyped-def]
    msgs = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.AuthenticationError) as e401:
        await gw.openai(key="sk-wrong").chat.completions.create(model="demo", messages=msgs)
    assert e401.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert "sk-wrong" not in str(e401.value)
    with pytest.raises(openai.PermissionDeniedError):
        await gw.openai(key="sk-limited").chat.completions.create(model="demo", messages=msgs)
    with pytest.raises(openai.NotFoundError) as e404:
        await gw.openai().chat.completions.create(model="no-such-alias", messages=msgs)
    assert e404.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as e400:
        await gw.openai().chat.completions.create(model="demo", messages=[])
    assert e400.value.body["param"] == "messages"  # type: ignore[index]


async def test_auth_header_variants(gw, http) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "demo", "messages": [{"role": "user", "content": "x"}]}
    for headers in ({"Authorization": f"Bearer {DEV_KEY}"}, {"api-key": DEV_KEY}, {"x-api-key": DEV_KEY}):
        async with http.post(gw.base_url + "/chat/completions", json=body, headers=headers) as r:
            assert r.status == 200, headers
    async with http.post(gw.base_url + "/chat/completions", json=body) as r:
        assert r.status == 401
        err = (await r.json())["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["code"] == "missing_api_key"


async def test_key_sha256_and_globs(gateway_factory: GatewayFactory) -> None:
    import hashlib

    cfg = base_config()
    cfg["models"]["team-a-chat"] = {"route": [{"provider": "mock", "model": "m"}]}
    cfg["keys"] = [{"name": "hashed", "key_sha256": hashlib.sha256(b"sk-hashed").hexdigest(),
                    "models": ["team-a-*"]}]
    gw = await gateway_factory(cfg)
    client = gw.openai(key="sk-hashed")
    ok = await client.chat.completions.create(model="team-a-chat", messages=[{"role": "user", "content": "y"}])
    assert ok.choices[0].message.content == "y"
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "y"}])


async def test_expired_key_rejected(gateway_factory: GatewayFactory) -> None:
    cfg = base_config()
    cfg["keys"].append({"name": "old", "key": "sk-old", "expires_at": "2020-01-01T00:00:00Z"})
    gw = await gateway_factory(cfg)
    with pytest.raises(openai.AuthenticationError) as err:
        await gw.openai(key="sk-old").chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "y"}])
    assert err.value.body["code"] == "key_expired"  # type: ignore[index]
