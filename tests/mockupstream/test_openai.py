"""The standalone mock upstream and the in-process mock provider: replies, pacing and faults."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import GatewayFactory, MockUpstream, base_config, free_port

MSG = [{"role": "user", "content": "hello mock"}]


def client(mock: MockUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=mock.url + "/v1", api_key="sk-upstream", max_retries=0)


async def test_openai_sdk_against_mock(mock_upstream: MockUpstream) -> None:
    c = client(mock_upstream)
    resp = await c.chat.completions.create(model="m", messages=MSG)
    assert resp.choices[0].message.content == "hello mock"
    chunks = [x async for x in await c.chat.completions.create(
        model="m", messages=MSG, stream=True, stream_options={"include_usage": True})]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
    assert [m.id async for m in c.models.list()] == ["mock-1"]
    emb = await c.embeddings.create(model="e", input="x y")
    assert emb.usage.prompt_tokens == 2


async def test_mock_validates_auth_and_body(mock_upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(base_url=mock_upstream.url + "/v1", api_key="bad",
                                 max_retries=0).chat.completions.create(model="m", messages=MSG)
    h = {"Authorization": "Bearer sk-upstream"}
    for body, param in (({"messages": MSG}, "model"), ({"model": "m", "messages": []}, "messages"),
                        ({"model": "m", "messages": [{"role": "robot"}]}, "messages[0].role"),
                        ({"model": "m", "messages": MSG, "stream_options": {}}, "stream_options")):
        async with http.post(mock_upstream.url + "/v1/chat/completions", json=body, headers=h) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == param
    async with http.post(mock_upstream.url + "/v1/chat/completions", data=b"{", headers=h) as r:
        assert r.status == 400


async def test_lorem_length_ttft_and_pacing(mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(reply="lorem", reply_tokens=5, ttft=0.2, tokens_per_s=50)
    t0 = time.perf_counter()
    stream = await client(mock_upstream).chat.completions.create(model="m", messages=MSG, stream=True)
    first_at, words = None, []
    async for c in stream:
        first_at = first_at or time.perf_counter() - t0
        words.append(c.choices[0].delta.content or "")
    total = time.perf_counter() - t0
    assert "".join(words).split() == ["lorem", "ipsum", "dolor", "sit", "amet"]
    assert first_at is not None and first_at >= 0.2
    assert total >= 0.2 + 5 / 50 * 0.9


async def test_fault_injection_and_control_api(mock_upstream: MockUpstream, http: aiohttp.ClientSession) -> None:
    async with http.post(mock_upstream.url + "/_mock/config", json={"error_status": 503}) as r:
        assert (await r.json())["error_status"] == 503
    with pytest.raises(openai.InternalServerError):
        await client(mock_upstream).chat.completions.create(model="m", messages=MSG)
    async with http.post(mock_upstream.url + "/_mock/config", json={"error_status": 99}) as r:
        assert r.status == 400
    async with http.get(mock_upstream.url + "/_mock/stats") as r:
        assert (await r.json())["calls"]["/v1/chat/completions"] == 1
    async with http.post(mock_upstream.url + "/_mock/reset") as r:
        assert r.status == 200
    mock_upstream.configure(error_rate=1.0)
    with pytest.raises(openai.InternalServerError):
        await client(mock_upstream).chat.completions.create(model="m", messages=MSG)
    async with http.get(mock_upstream.url + "/_mock/requests") as r:
        assert (await r.json())[-1]["body"]["messages"] == MSG


async def test_in_process_mock_faults(gateway_factory: GatewayFactory) -> None:
    cfg = base_config()
    cfg["providers"]["broken"] = {"type": "mock", "mock": {"error_status": 429}}
    cfg["providers"]["cut"] = {"type": "mock", "mock": {"cut_after": 2, "reply": "lorem"}}
    cfg["models"]["broken"] = {"route": [{"provider": "broken", "model": "m"}], "retry": {"attempts": 1}}
    cfg["models"]["cut"] = {"route": [{"provider": "cut", "model": "m"}], "retry": {"attempts": 1}}
    gw = await gateway_factory(cfg)
    with pytest.raises(openai.RateLimitError):
        await gw.openai().chat.completions.create(model="broken", messages=MSG)
    with pytest.raises(openai.APIError):
        async for _ in await gw.openai().chat.completions.create(model="cut", messages=MSG, stream=True):
            pass


async def test_cli_mock_upstream_process() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "mock-upstream", "--port", str(port), "--reply", "lorem",
        "--reply-tokens", "3", env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert f"127.0.0.1:{port}" in line.decode()
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                try:
                    async with s.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                      json={"model": "m", "messages": MSG}) as r:
                        data = orjson.loads(await r.read())
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        assert data["choices"][0]["message"]["content"] == "lorem ipsum dolor"
    finally:
        proc.terminate()
        await proc.wait()
