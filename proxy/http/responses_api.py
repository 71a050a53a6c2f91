"""The OpenAI Responses API surface: `POST /v1/responses` (JSON or stream), `GET` and `DELETE
/v1/responses/{id}`, for clients built on the OpenAI SDK's `client.responses`. The request is translated onto the
chat pipeline (proxy/inbound/responses/) for any provider; errors are OpenAI's shape.

Stored responses (`store`, true unless the request says false, as OpenAI's default): the Response is written to
the database with the conversation's input items before its last bytes leave (so a `previous_response_id` sent
right after finds it), and kept `responses.store_ttl`. Only the key that made a response may read, continue or
delete it; to any other key it does not exist (404)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from proxy.core.context import RequestContext
from proxy.core.errors import INVALID_REQUEST, NOT_FOUND, UNAVAILABLE, GatewayError
from proxy.gateway import GATEWAY, Gateway
from proxy.http import inbound
from proxy.http.lifecycle import serve
from proxy.http.openai_api import authenticate_bodyless, new_context
from proxy.inbound.base import JSON
from proxy.inbound.responses import REQUEST, RESPONSE, ResponsesAPI
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

API = ResponsesAPI()
PREFIX = "/v1/responses"
log = get_logger("gateway.responses")


def _unavailable() -> GatewayError:
    return GatewayError(503, "Stored responses are unavailable: the gateway's database cannot be reached.",
                        UNAVAILABLE, code="store_unavailable")


class Stored:
    """`previous_response_id` in, `store` out (inbound.State)."""

    async def before(self, gw: Gateway, ctx: RequestContext) -> JSON | None:
        body: JSON = ctx.notes[REQUEST]
        prev = body.get("previous_response_id")
        if prev is None:
            return None
        if not isinstance(prev, str) or not prev:
            raise GatewayError(400, "Invalid 'previous_response_id': expected a response id.", INVALID_REQUEST,
                               param="previous_response_id")
        assert ctx.key is not None
        try:
            row = await gw.ledger_store.get_response(prev, ctx.key.id) if gw.ledger.ready else None
        except Exception as err:
            m.BACKEND_ERRORS.labels("db", "responses").inc()
            log.warning("responses_read_failed", error=f"{type(err).__name__}: {err}")
            raise _unavailable() from None
        if row is None:
            if not gw.ledger.ready:
                raise _unavailable()
            raise GatewayError(400, f"Previous response with id '{prev}' not found.", INVALID_REQUEST,
                               param="previous_response_id", code="previous_response_not_found")
        items = body["input"]  # a string or a list: the translation checked it
        new = [{"role": "user", "content": items}] if isinstance(items, str) else items
        # the earlier turns, then its answer, then this turn; its instructions are not carried over (as OpenAI)
        return {**body, "input": [*row["input"], *row["response"].get("output", ()), *new]}

    async def after(self, gw: Gateway, ctx: RequestContext) -> None:
        request: dict[str, Any] = ctx.notes[REQUEST]
        resp = ctx.notes.get(RESPONSE)
        if request.get("store") is False or resp is None or ctx.key is None:
            return
        items = request["input"]
        items = [{"role": "user", "content": items}] if isinstance(items, str) else items
        try:
            await gw.responses.save((resp["id"], ctx.key.id, items, resp))
        except Exception as err:  # the answer stands; only a later previous_response_id / GET will miss it
            m.BACKEND_ERRORS.labels("db", "responses").inc()
            log.warning("responses_store_failed", error=f"{type(err).__name__}: {err}")


ENDPOINT = inbound.Inbound(API, Stored())


async def create(request: web.Request) -> web.StreamResponse:
    return await serve(request.app[GATEWAY], new_context(request, "chat"), request, ENDPOINT)


async def _owned(request: web.Request) -> tuple[Gateway, RequestContext, str]:
    gw: Gateway = request.app[GATEWAY]
    ctx = new_context(request, "chat")
    ctx.key = await authenticate_bodyless(gw, request)  # a signed key's signature too
    if not gw.ledger.ready:
        raise _unavailable()
    return gw, ctx, request.match_info["response_id"]


def _not_found(response_id: str) -> GatewayError:
    return GatewayError(404, f"No response found with id '{response_id}'.", NOT_FOUND, param="response_id")


async def retrieve(request: web.Request) -> web.Response:
    gw, ctx, response_id = await _owned(request)
    assert ctx.key is not None
    row = await gw.ledger_store.get_response(response_id, ctx.key.id)
    if row is None:
        raise _not_found(response_id)
    return web.Response(body=orjson.dumps(row["response"]), content_type="application/json",
                        headers={"x-request-id": ctx.request_id})


async def delete(request: web.Request) -> web.Response:
    gw, ctx, response_id = await _owned(request)
    assert ctx.key is not None
    if not await gw.ledger_store.delete_response(response_id, ctx.key.id):
        raise _not_found(response_id)
    return web.Response(body=orjson.dumps({"id": response_id, "object": "response", "deleted": True}),
                        content_type="application/json", headers={"x-request-id": ctx.request_id})


def add_routes(app: web.Application) -> None:
    app.router.add_post(PREFIX, create)
    app.router.add_get(PREFIX + "/{response_id}", retrieve)
    app.router.add_delete(PREFIX + "/{response_id}", delete)
