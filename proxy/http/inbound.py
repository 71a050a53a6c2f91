"""Serving an inbound API that is not chat completions (proxy/inbound/: `/v1/messages`, ...) through the one
pipeline: authenticate before the body is read, translate the request, `Pipeline.run`, then write the answer,
the replayed cache hit or the live stream in the API's own shape, and every error in its error shape."""

from __future__ import annotations

import asyncio
from typing import Protocol

import orjson
from aiohttp import web

from proxy.core.context import RequestContext
from proxy.core.errors import SERVER, GatewayError
from proxy.gateway import GATEWAY, Gateway
from proxy.http.openai_api import new_context, read_json
from proxy.inbound.base import JSON, InboundAPI
from proxy.infra import sse
from proxy.observability.logs import get_logger
from proxy.pipeline import Answer, settle_stream

log = get_logger("gateway")
INTERNAL = "The gateway hit an internal error; it has been logged."


class State(Protocol):
    """Stored state around an API's calls (the Responses API's `store` / `previous_response_id`)."""

    async def before(self, gw: Gateway, ctx: RequestContext, body: JSON) -> JSON:
        """The client's request (the key is known) -> the request with the stored state it refers to merged in."""

    async def after(self, gw: Gateway, ctx: RequestContext) -> None:
        """The answer is made (its last bytes not yet sent): keep what a later call may refer to."""


def error_response(api: InboundAPI, err: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    status, body = api.error(err)
    return web.Response(status=status, body=body, content_type="application/json",
                        headers={**err.headers, **(headers or {})})


async def serve(request: web.Request, api: InboundAPI, state: State | None = None) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    ctx = new_context(request, "chat")  # a chat completion to every stage: same cache, quotas, ledger, metrics
    gw.in_flight(api.kind, +1)
    try:
        await gw.pipeline.authenticate(ctx, request)  # 401 before the body is read or judged
        raw = await read_json(request, gw.cfg.listen.max_body_bytes)
        if state is not None:
            raw = await state.before(gw, ctx, raw)
        body = api.translate(ctx, raw)
        ctx.body, ctx.alias, ctx.stream = body, body["model"], bool(body.get("stream"))
        answer = await gw.pipeline.run(ctx)
        if answer.completion is not None:
            c = answer.completion
            headers = ctx.response_headers()
            headers["x-gateway-cost-usd"] = f"{ctx.cost_usd:.8f}"
            data = api.response(ctx, c.data if c.data is not None else orjson.loads(c.body))
            if state is not None:
                await state.after(gw, ctx)
            return web.Response(body=data, content_type="application/json", headers=headers)
        return await _stream(ctx, request, api, answer, state)
    except GatewayError as err:
        ctx.fail(err)
        return error_response(api, err, ctx.response_headers())
    except Exception:
        ctx.status, ctx.error_type = 500, "internal_error"
        log.exception("unhandled error", path=request.path)
        return error_response(api, GatewayError(500, INTERNAL, SERVER, code="internal_error"))
    finally:
        gw.in_flight(api.kind, -1)
        gw.pipeline.meter.finish(ctx)


async def _stream(ctx: RequestContext, request: web.Request, api: InboundAPI, answer: Answer,
                  state: State | None) -> web.StreamResponse:
    out = api.stream(ctx, ctx.body)
    gw = request.app[GATEWAY]
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
        ctx.client_disconnected = True
        ctx.status = 499
        await stream.aclose()
        resp.stop_streaming()
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
