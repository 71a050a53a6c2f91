"""The Anthropic Messages API surface: `POST /v1/messages` (JSON or stream) and `POST /v1/messages/count_tokens`,
for clients built on the Anthropic SDK. Keys come as `x-api-key` or `Authorization: Bearer` (`anthropic-version`
is accepted and not required); errors leave in Anthropic's shape (`error_response`, also used by app.py's
middleware for errors raised before a handler runs on these paths)."""

from __future__ import annotations

import orjson
from aiohttp import web

from proxy.core.context import RequestContext
from proxy.core.errors import GatewayError
from proxy.gateway import GATEWAY, Gateway
from proxy.http import inbound
from proxy.http.lifecycle import request_json, serve
from proxy.http.limits import check_lengths
from proxy.http.openai_api import new_context
from proxy.inbound.anthropic import AnthropicMessages
from proxy.inbound.anthropic.count import estimate_tokens

API = AnthropicMessages()
ENDPOINT = inbound.Inbound(API)
PREFIX = "/v1/messages"


def owns(path: str) -> bool:
    """The paths whose errors are in Anthropic's shape."""
    return path.startswith(PREFIX)


def error_response(err: GatewayError) -> web.Response:
    return inbound.error_response(API, err)


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve(request.app[GATEWAY], new_context(request, "chat"), request, ENDPOINT)


async def count_tokens(request: web.Request) -> web.Response:
    """`{"input_tokens": N}`: the gateway's estimate (proxy/core/tokens.py) of the prompt as the route's provider
    would get it. Checked like a call (key, the key may use the model, the alias exists), but it is free: no
    quota, budget or ledger row."""
    gw: Gateway = request.app[GATEWAY]
    ctx = new_context(request, "chat")
    try:
        await gw.pipeline.authenticate(ctx, request)
        body = await request_json(gw, ctx, request)
        check_lengths(body, gw.cfg.listen.limits)
        tokens = estimate_tokens(body)
        ctx.alias = body["model"]
        _resolve(gw, ctx)
    except GatewayError as err:
        return inbound.error_response(API, err, {"x-request-id": ctx.request_id})
    return web.Response(body=orjson.dumps({"input_tokens": tokens}), content_type="application/json",
                        headers={"x-request-id": ctx.request_id})


def _resolve(gw: Gateway, ctx: RequestContext) -> None:
    assert ctx.key is not None
    gw.pipeline.auth.authorize(ctx.key, ctx.alias)
    gw.pipeline.router.resolve(ctx)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PREFIX, messages)
    app.router.add_post(PREFIX + "/count_tokens", count_tokens)
