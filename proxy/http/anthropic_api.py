"""The Anthropic Messages API surface: `POST /v1/messages` (JSON or stream) and `POST /v1/messages/count_tokens`,
for clients built on the Anthropic SDK. Keys come as `x-api-key` or `Authorization: Bearer` (`anthropic-version`
is accepted and not required); errors leave in Anthropic's shape (`error_response`, also used by app.py's
middleware for errors raised before a handler runs on these paths)."""

from __future__ import annotations

import orjson
from aiohttp import web

from proxy.core.context import Native, RequestContext
from proxy.core.errors import GatewayError, UpstreamError
from proxy.gateway import GATEWAY, Gateway
from proxy.http import inbound
from proxy.http.lifecycle import request_json, serve
from proxy.http.limits import check_lengths
from proxy.http.openai_api import new_context
from proxy.inbound.anthropic import AnthropicMessages
from proxy.inbound.anthropic.count import counted_body, estimate, estimate_tokens
from proxy.inbound.anthropic.request import invalid
from proxy.observability.logs import get_logger
from proxy.pipeline import AGENT_PREFIX
from proxy.providers.anthropic.messages import COUNT_TOKENS

API = AnthropicMessages()
log = get_logger("gateway.messages")
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
    """`{"input_tokens": N}`: Anthropic's own count when the alias is served by Anthropic (the request forwarded as
    is, `x-gateway-provider` names it), else the gateway's estimate (proxy/core/tokens.py) of the prompt. Checked
    like a call (key, the key may use the model, the alias exists), but it is free: no quota, budget or ledger
    row. An Anthropic that cannot be reached leaves the estimate; its 4xx (a bad request) is the answer."""
    gw: Gateway = request.app[GATEWAY]
    ctx = new_context(request, "chat")
    headers = {"x-request-id": ctx.request_id}
    try:
        await gw.pipeline.authenticate(ctx, request)
        body = await request_json(gw, ctx, request)
        check_lengths(body, gw.cfg.listen.limits)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("Field required" if model is None else "Input should be a non-empty string", "model")
        ctx.alias = model
        if model.startswith(AGENT_PREFIX) and gw.pipeline.expand_agent is not None:
            # the agent's rendered system prompt and tools count too: the estimate of what its alias would get
            ctx.body = counted_body(body)
            await gw.pipeline.expand_agent(ctx)
            _resolve(gw, ctx)
            return _counted(estimate(ctx), headers)
        _resolve(gw, ctx)
        target = gw.pipeline.executor.native_slot(ctx.served_alias or ctx.alias, COUNT_TOKENS)
        if target is not None:
            client, upstream_model, opts = target
            try:
                counted = await client.complete_native(Native(COUNT_TOKENS, body, None, API.native_headers(ctx)),
                                                       upstream_model, opts)
                headers["x-gateway-provider"] = client.name
                return web.Response(body=counted.body, content_type="application/json", headers=headers)
            except UpstreamError as err:
                if not err.retryable:
                    raise
                log.warning("count_tokens_upstream_failed", provider=client.name, error=err.kind)
        tokens = estimate_tokens(body)
    except GatewayError as err:
        return inbound.error_response(API, err, headers)
    return _counted(tokens, headers)


def _counted(tokens: int, headers: dict[str, str]) -> web.Response:
    headers["x-gateway-estimate"] = "true"
    return web.Response(body=orjson.dumps({"input_tokens": tokens}), content_type="application/json",
                        headers=headers)


def _resolve(gw: Gateway, ctx: RequestContext) -> None:
    assert ctx.key is not None
    gw.pipeline.auth.authorize(ctx.key, ctx.alias)
    gw.pipeline.router.resolve(ctx)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PREFIX, messages)
    app.router.add_post(PREFIX + "/count_tokens", count_tokens)
