"""OpenAI-compatible upstreams: forwarding, rewriting, error mapping, streams that break, disconnects."""

from __future__ import annotations

import asyncio

import openai
import orjson
import pytest

from tests.conftest import DEV_KEY, GatewayFactory, MockUpstream, auth, base_config

MSG = [{"role": "user", "content": "ping pong"}]


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, mock_upstream: MockUpstream):  # type: ignore[no-untyped-def]
    cfg = base_config(mock_upstream.url)
    cfg["models"]["up"]["route"][0]["model"] = "upstream-model-x"
    cfg["providers"]["up"]["headers"] = {"x-extra": "yes"}
    cfg["providers"]["up"]["timeout"] = {"first_token": 0.5, "idle": 0.5, "total": 2}
    return await gateway_factory(cfg)


async def test_forwarding_rewrites_model_and_keeps_unknown_fields(gw, mock_upstream, http) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "up", "messages": MSG, "some_future_field": {"a": [1, 2]}, "temperature": 0.3}
    async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
        assert r.status == 200
        data = await r.json()
    assert data["model"] == "upstream-model-x"  # the upstream's answer, passed through
    sent = mock_upstream.state.requests[-1]
    assert sent["body"]["model"] == "upstream-model-x"
    assert sent["body"]["some_future_field"] == {"a": [1, 2]}
    assert sent["body"]["temperature"] == 0.3
    assert sent["headers"]["Authorization"] == "Bearer sk-upstream"  # the gateway's upstream key
    assert sent["headers"]["x-extra"] == "yes"
    assert DEV_KEY not in orjson.dumps(sent).decode()  # the client's key never goes upstream


async def test_stream_usage_requested_upstream_and_stripped(gw, mock_upstream) -> None:  # type: ignore[no-untyped-def]
    client = gw.openai()
    chunks = [c async for c in await client.chat.completions.create(model="up", messages=MSG, stream=True)]
    assert mock_upstream.state.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)  # the usage-only chunk was removed
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "ping pong"
    log_usage = gw.gateway  # the request was metered: see metrics test for values
    assert log_usage is not None


async def test_stream_passthrough_is_byte_identical(gw, mock_upstream, http) -> None:  # type: ignore[no-untyped-def]
    body = {"model": "up", "messages": MSG, "stream": True, "stream_options": {"include_usage": True}}
    async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
        via_gateway = await r.read()
    direct_body = {**body, "model": "upstream-model-x"}
    async with http.post(mock_upstream.url + "/v1/chat/completions", json=direct_body,
                         headers={"Authorization": "Bearer sk-upstream"}) as r:
        direct = await r.read()

    def strip_created(raw: bytes) -> list[dict]:  # type: ignore[type-arg]
        out = []
        for ev in raw.split(b"\n\n"):
            if ev.startswith(b"data: {"):
                d = orjson.loads(ev[6:])
                d.pop("created")
                out.append(d)
        return out

    assert strip_created(via_gateway) == strip_created(direct)
    assert via_gateway.endswith(b"data: [DONE]\n\n")


def pingers() -> int:
    return sum(1 for t in asyncio.all_tasks() if "EventSourceResponse._ping" in str(t.get_coro())
               or "EventStream._ping" in str(t.get_coro()))


async def test_finished_streams_leave_no_keepalive_tasks_or_timers(gw, http) -> None:  # type: ignore[no-untyped-def]
    """A stream pings its client every 15 s once it outlives that interval; a finished stream must stop
    that, or thousands of finished streams keep their responses and connections alive for 15 s."""
    before = pingers()
    body = {"model": "up", "messages": MSG, "stream": True}
    for _ in range(5):
        async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
            assert (await r.read()).endswith(b"data: [DONE]\n\n")
    for _ in range(5):
        await asyncio.sleep(0)
    assert pingers() == before
    live = [h for h in asyncio.get_running_loop()._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    assert not [h for h in live if "_start_pings" in repr(h)]


async def test_quiet_stream_gets_keepalive_pings_then_ends_cleanly(gw, http, mock_upstream,  # type: ignore[no-untyped-def]
                                                                    monkeypatch) -> None:
    from proxy.infra import sse

    monkeypatch.setattr(sse, "PING_INTERVAL", 0.1)
    mock_upstream.configure(tokens_per_s=3, reply="lorem", reply_tokens=2)  # ~0.35 s between chunks
    body = {"model": "up", "messages": MSG, "stream": True}
    async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
        data = await r.read()
    assert data.count(b": ping\n\n") >= 2 and data.endswith(b"data: [DONE]\n\n")
    payloads = [e for e in data.split(b"\n\n") if e.startswith(b"data: {")]
    assert len(payloads) == 4  # role, 2 tokens, finish: pings sit between events, never inside one
    for _ in range(5):
        await asyncio.sleep(0)
    assert pingers() == 0


@pytest.mark.parametrize(("upstream_status", "client_status", "exc"), [
    (400, 400, openai.BadRequestError),
    (429, 429, openai.RateLimitError),
    (500, 502, openai.InternalServerError),
    (503, 503, openai.InternalServerError),
])
async def test_upstream_errors_mapped(gw, mock_upstream, upstream_status, client_status, exc) -> None:  # type: ignore[no-untyped-def]
    mock_upstream.configure(error_status=upstream_status)
    with pytest.raises(exc) as err:
        await gw.openai().chat.completions.create(model="up", messages=MSG)
    assert err.value.status_code == client_status
    body = err.value.body
    assert isinstance(body, dict) and "message" in body
    if upstream_status == 429:
        assert err.value.response.headers["Retry-After"] == "1"


async def test_upstream_timeout_is_504(gw, mock_upstream) -> None:  # type: ignore[no-untyped-def]
    mock_upstream.configure(latency=1.5)
    with pytest.raises(openai.APIStatusError) as err:
        await gw.openai().chat.completions.create(model="up", messages=MSG)
    assert err.value.status_code == 504
    assert err.value.body["code"] == "upstream_timeout"  # type: ignore[index]


async def test_upstream_unreachable_is_502(gateway_factory: GatewayFactory) -> None:
    from tests.conftest import free_port

    gw = await gateway_factory(base_config(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(openai.InternalServerError) as err:
        await gw.openai().chat.completions.create(model="up", messages=MSG)
    assert err.value.status_code == 502
    assert err.value.body["code"] == "upstream_connect_error"  # type: ignore[index]


async def test_stream_cut_midway_ends_with_error_event(gw, mock_upstream, http) -> None:  # type: ignore[no-untyped-def]
    mock_upstream.configure(cut_after=2)
    body = {"model": "up", "messages": [{"role": "user", "content": "a b c d e f"}], "stream": True}
    async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
        assert r.status == 200
        raw = await asyncio.wait_for(r.read(), 5)
    events = [e for e in raw.split(b"\n\n") if e]
    assert len(events) == 3  # two chunks, then the error — no [DONE], no hang
    err = orjson.loads(events[-1][6:])["error"]
    assert err["code"] == "upstream_stream_error"
    # and the SDK raises it
    with pytest.raises(openai.APIError):
        async for _ in await gw.openai().chat.completions.create(model="up", messages=MSG, stream=True):
            pass


async def test_stream_idle_timeout_ends_stream(gw, mock_upstream, http) -> None:  # type: ignore[no-untyped-def]
    mock_upstream.configure(tokens_per_s=1)  # 1 s between chunks > idle timeout 0.5 s
    body = {"model": "up", "messages": [{"role": "user", "content": "a b c"}], "stream": True}
    async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
        raw = await asyncio.wait_for(r.read(), 5)
    assert b'"upstream_timeout"' in raw and not raw.endswith(b"[DONE]\n\n")


async def test_stream_longer_than_idle_timeout_with_steady_chunks_completes(gw, mock_upstream, http) -> None:  # type: ignore[no-untyped-def]
    # chunks every 0.1 s for ~1.2 s: the idle timer (0.5 s) re-arms after each quiet-enough period
    mock_upstream.configure(tokens_per_s=10, reply="lorem", reply_tokens=12)
    body = {"model": "up", "messages": MSG, "stream": True}
    async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
        raw = await asyncio.wait_for(r.read(), 5)
    assert raw.endswith(b"data: [DONE]\n\n") and b"upstream_timeout" not in raw
    assert raw.count(b"data: {") >= 12


async def test_client_disconnect_cancels_upstream(gw, mock_upstream, http) -> None:  # type: ignore[no-untyped-def]
    mock_upstream.configure(tokens_per_s=5, reply="lorem", reply_tokens=50)
    body = {"model": "up", "messages": MSG, "stream": True}
    cfg = gw.gateway.cfg
    cfg.providers["up"].timeout.idle = 5
    gw.gateway.plans.refresh_options()
    async with http.post(gw.base_url + "/chat/completions", json=body, headers=auth()) as r:
        await r.content.readline()
        assert mock_upstream.state.in_flight == 1
    # response closed by the client: the gateway must drop the upstream stream promptly
    for _ in range(50):
        if mock_upstream.state.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert mock_upstream.state.in_flight == 0


async def test_embeddings_passthrough(gw, mock_upstream) -> None:  # type: ignore[no-untyped-def]
    resp = await gw.openai().embeddings.create(model="up", input="hello there")
    assert resp.data[0].embedding
    assert mock_upstream.state.requests[-1]["body"]["model"] == "upstream-model-x"


def test_chunks_of_one_read_come_out_before_its_error() -> None:
    from proxy.infra.sse import SSEParser
    from proxy.providers.openai.stream import OpenAIStream

    raw = (b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n'
           b'data: {"error":{"message":"boom","code":"x"}}\n\n')
    out, err = OpenAIStream({}, "m").feed_all(SSEParser().feed(raw))
    assert out == raw.split(b"\n\n")[0] + b"\n\n"
    assert err is not None and "boom" in str(err)
