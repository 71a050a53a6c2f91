"""Serving an inbound API that is not chat completions (proxy/inbound/: `/v1/messages`, ...) through the one
request lifecycle and the one pipeline: authenticate before the body is read, translate the request,
`Pipeline.run`, then write the answer, the replayed cache hit or the live stream in the API's own shape, and
every error in its error shape."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

import orjson
from aiohttp import web

from proxy.core.context import RequestContext
from proxy.core.errors import SERVER, GatewayError, UpstreamError
from proxy.gateway import Gateway
from proxy.http.lifecycle import request_json
from proxy.http.limits import check_lengths
from proxy.inbound.base import JSON, InboundAPI
from proxy.infra import sse
from proxy.observability.logs import get_logger
from proxy.pipeline import Answer, client_left, relay_stream, settle_stream
from proxy.providers.base import ChunkStream, NativeStream

log = get_logger("gateway")
INTERNAL = "The gateway hit an internal error; it has been logged."


class State(Protocol):
    """Stored state around an API's calls (the Responses API's `store` / `previous_response_id`)."""

    async def before(self, gw: Gateway, ctx: RequestContext) -> JSON | None:
        """The client's request (translated, the key known) -> that request with the stored state it refers to
        merged in, to translate again; None when it refers to none."""

    async def after(self, gw: Gateway, ctx: RequestContext) -> None:
        """The answer is made (its last bytes not yet sent): keep what a later call may refer to."""


def error_response(api: InboundAPI, err: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    status, body = api.error(err)
    return web.Response(status=status, body=body, content_type="application/json",
                        headers={**err.headers, **(headers or {})})


class Inbound:
    """An inbound API as an Endpoint of the one request lifecycle (proxy/http/lifecycle.py). To every stage the
    call is a chat completion (same cache, quotas, ledger, metrics); a bug leaves through the app's middleware,
    in this API's error shape."""

    __slots__ = ("api", "kind", "state")

    def __init__(self, api: InboundAPI, state: State | None = None) -> None:
        self.api = api
        self.kind = api.kind
        self.state = state

    def body(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> Awaitable[dict[str, Any]]:
        return request_json(gw, ctx, request)

    def prepare(self, gw: Gateway, ctx: RequestContext, raw: dict[str, Any]) -> dict[str, Any]:
        check_lengths(raw, gw.cfg.listen.limits, self.api.messages_field)
        body = self.api.translate(ctx, raw, self.kind in gw.pipeline.executor.native_wires)
        ctx.stream = bool(body.get("stream"))
        return body

    async def answer(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> web.StreamResponse:
        state = self.state
        if state is not None and (merged := await state.before(gw, ctx)) is not None:
            ctx.body = self.api.translate(ctx, merged, ctx.native is not None)
        answer = await gw.pipeline.run(ctx)
        if answer.completion is not None:
            c = answer.completion
            headers = ctx.response_headers()
            headers["x-gateway-cost-usd"] = f"{ctx.cost_usd:.8f}"
            if c.wire == self.kind:  # the upstream speaks this API: its answer as it came
                data = self.api.native_response(ctx, c)
            else:
                data = self.api.response(ctx, c.data if c.data is not None else orjson.loads(c.body))
            if state is not None:
                await state.after(gw, ctx)
            return web.Response(body=data, content_type="application/json", headers=headers)
        return await _stream(gw, ctx, request, self.api, answer, state)

    def failed(self, ctx: RequestContext, err: GatewayError) -> web.Response:
        return error_response(self.api, err, ctx.response_headers())


async def _stream(gw: Gateway, ctx: RequestContext, request: web.Request, api: InboundAPI, answer: Answer,
                  state: State | None) -> web.StreamResponse:
    out = api.stream(ctx, ctx.body)
    headers = ctx.response_headers()
    if answer.replay is not None:  # a cache hit, asked as a stream
        headers["x-gateway-cost-usd"] = "0.00000000"
        resp = await sse.open_stream(request, headers)
        ctx.mark_first_token()
        data = b"".join(map(out.feed, answer.replay)) + out.end(ctx.usage)
        if state is not None:
            await state.after(gw, ctx)
        await sse.end_stream(resp, data, quiet=False)
        return resp
    stream = answer.stream
    assert stream is not None
    if isinstance(stream.translator, NativeStream) and stream.translator.wire == api.kind:
        return await _relay(gw, ctx, request, api, answer, stream, stream.translator, state)
    resp = await sse.open_stream(request, headers)
    ctx.mark_first_token()
    try:
        if answer.first is not None:
            await resp.write(out.feed_frames(answer.first))
        async for block in stream.frames:
            if data := out.feed_frames(block):
                await resp.write(data)
        tail = out.end(stream.usage)
        if state is not None:
            await state.after(gw, ctx)
        await sse.end_stream(resp, tail, quiet=False)
    except GatewayError as err:  # headers are gone: end with the API's error event rather than hang or 200-lie
        ctx.fail(err)
        await sse.end_stream(resp, out.error(err))
    except (ConnectionResetError, asyncio.CancelledError):
        await client_left(ctx, stream, resp)
        raise
    except Exception:
        log.exception("unhandled error in a stream", path=request.path)
        err = GatewayError(500, INTERNAL, SERVER, code="internal_error")
        ctx.fail(err)
        await stream.aclose()
        await sse.end_stream(resp, out.error(err))
    finally:
        settle_stream(ctx, stream)
    return resp


async def _relay(gw: Gateway, ctx: RequestContext, request: web.Request, api: InboundAPI, answer: Answer,
                 stream: ChunkStream, native: NativeStream, state: State | None) -> web.StreamResponse:
    """A stream from an upstream that speaks the client's API: its bytes as they came (its events, its error
    events); only an upstream that broke off mid-way gets an ending written by the gateway."""

    async def end() -> bytes:
        api.native_end(ctx, native)
        if state is not None:
            await state.after(gw, ctx)
        return b""

    def failed(err: GatewayError) -> bytes:
        return b"" if isinstance(err, UpstreamError) and err.delivered else native.error_events(err)

    return await relay_stream(ctx, request, stream, answer.first, end, failed)
