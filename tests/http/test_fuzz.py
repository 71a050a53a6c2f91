"""Fuzzing the OpenAI surface (Hypothesis, a bounded budget): arbitrary chat bodies — mostly well shaped, with
hostile values anywhere — sent to the real server for the in-process mock, the OpenAI pass-through and the
Anthropic and Gemini translations, also as stream, embeddings and batch items. Never a 5xx, never a hang,
never a traceback in a body; every error is OpenAI-format JSON."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import GatewayFactory, GatewayServer, MockUpstream, auth, base_config
from tests.http.strategies import FUZZ, chat_bodies, dumps, json_values

ALIASES = ["demo", "up", "claude", "gem"]
TIMEOUT = aiohttp.ClientTimeout(total=15)  # a hang fails the example


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream) -> GatewayServer:
    cfg = base_config(mock_upstream.url, cache={"enabled": True})
    cfg["providers"]["anthropic"] = {"type": "anthropic", "base_url": mock_upstream.url + "/anthropic",
                                     "api_key": "sk-upstream"}
    cfg["providers"]["gemini"] = {"type": "gemini", "base_url": mock_upstream.url, "api_key": "sk-upstream"}
    cfg["models"]["claude"] = {"route": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}]}
    cfg["models"]["gem"] = {"route": [{"provider": "gemini", "model": "gemini-2.5-flash"}]}
    for alias in ("up", "claude", "gem"):
        cfg["models"][alias]["retry"] = {"attempts": 1}
    cfg["logging"] = {"requests": False}
    return await gateway_factory(cfg)


async def send(http: aiohttp.ClientSession, url: str, payload: bytes) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    async with http.post(url, data=payload, headers=headers, timeout=TIMEOUT) as r:
        text = await r.text()
    assert r.status < 500, (r.status, payload[:500], text[:500])
    assert "Traceback" not in text and 'File "' not in text
    if r.status >= 400:
        err = orjson.loads(text)["error"]
        assert {"message", "type", "param", "code"} <= set(err)


@FUZZ
@given(body=chat_bodies(ALIASES))
async def test_chat_bodies(gw: GatewayServer, http: aiohttp.ClientSession, body: Any) -> None:
    await send(http, gw.base_url + "/chat/completions", dumps(body))


@FUZZ
@given(items=st.lists(chat_bodies(ALIASES), min_size=1, max_size=4), concurrency=json_values | st.integers(1, 8),
       inp=json_values | st.lists(st.integers(0, 10**6), max_size=4) | st.lists(st.text(max_size=20), max_size=4),
       extra=st.fixed_dictionaries({}, optional={"dimensions": json_values | st.integers(-1, 5000),
                                                 "encoding_format": json_values | st.sampled_from(["float", "base64"])}))
async def test_batch_and_embeddings_bodies(gw: GatewayServer, http: aiohttp.ClientSession, items: list[Any],
                                           concurrency: Any, inp: Any, extra: dict[str, Any]) -> None:
    await send(http, gw.base_url + "/gateway/batch", dumps({"requests": items, "concurrency": concurrency}))
    for alias in ("demo", "up", "gem"):
        await send(http, gw.base_url + "/embeddings", dumps({"model": alias, "input": inp, **extra}))


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
async def test_bytes_that_are_not_json(gw: GatewayServer, http: aiohttp.ClientSession, raw: bytes) -> None:
    await send(http, gw.base_url + "/chat/completions", raw)
