"""The mock upstream's fault injection used by the resilience tests and loadtests/chaos.py."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import MockUpstream

HDR = {"Authorization": "Bearer sk-upstream"}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi there"}]}


async def post(mu: MockUpstream, stream: bool = False) -> tuple[int, str, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.post(mu.url + "/v1/chat/completions", headers=HDR,
                                                    json={**BODY, "stream": stream}) as r:
        return r.status, r.content_type, await r.read(), dict(r.headers)


async def test_fail_first_then_normal(mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(error_status=503, fail_first=2, retry_after=0.25)
    first = await post(mock_upstream)
    assert first[0] == 503 and first[3]["Retry-After"] == "0.25"
    assert (await post(mock_upstream))[0] == 503
    assert (await post(mock_upstream))[0] == 200
    mock_upstream.configure(fail_first=1)  # a new behaviour restarts the count
    assert (await post(mock_upstream))[0] == 503


async def test_faults(mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(fault="drop")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(mock_upstream)
    mock_upstream.configure(fault="malformed_json")
    status, ctype, raw, _ = await post(mock_upstream)
    assert status == 200 and ctype == "application/json" and raw.startswith(b'{"id"')
    with pytest.raises(ValueError):
        __import__("orjson").loads(raw)
    status, ctype, raw, _ = await post(mock_upstream, stream=True)
    assert ctype == "text/event-stream" and raw.endswith(b"data: [DONE]\n\n")
    mock_upstream.configure(fault="wrong_content_type")
    status, ctype, raw, _ = await post(mock_upstream, stream=True)
    assert status == 200 and ctype == "text/html" and raw.startswith(b"<html>")
    mock_upstream.configure(fault="content_filter")
    status, _, raw, _ = await post(mock_upstream)
    assert status == 400 and b"content_filter" in raw
    mock_upstream.configure(fault=None, context_window=1)
    status, _, raw, _ = await post(mock_upstream)
    assert status == 400 and b"context_length_exceeded" in raw


async def test_trickle_and_other_formats_still_fail(mock_upstream: MockUpstream) -> None:
    mock_upstream.configure(trickle=0.01)
    status, _, raw, _ = await post(mock_upstream)
    assert status == 200 and __import__("orjson").loads(raw)["object"] == "chat.completion"
    mock_upstream.configure(trickle=0, fault="drop")
    assert mock_upstream.state.should_fail() == 502  # formats without fault support still fail
    async with aiohttp.ClientSession() as s, s.post(mock_upstream.url + "/_mock/reset") as r:
        assert r.status == 200
    assert mock_upstream.state.next_fault() is None
