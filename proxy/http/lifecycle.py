"""The one request lifecycle: every proxied call goes through `serve`, whatever its wire format.

An OpenAI endpoint (chat completions, embeddings), an inbound API in another format (`/v1/messages`) and
each item of a batch are `Endpoint`s: where the body comes from, how it is validated (and translated), how
the pipeline answers it, and how an error is rendered. `serve` does the rest the same way for all of them.
An HTTP request's body comes through `request_json`: read once, its signature verified for a key with
`signing: required` before any of it is used, then parsed within `listen.limits`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from aiohttp import web

from proxy.core.context import RequestContext
from proxy.core.errors import GatewayError
from proxy.core.identity import KeyInfo
from proxy.gateway import Gateway
from proxy.http.limits import parse_json, read_body

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Endpoint(Protocol[R_co]):
    """What one kind of request does inside `serve`. Methods may hand back the awaitable they start instead of
    being coroutines themselves: the common path then allocates no coroutine of its own."""

    kind: str  # the in-flight gauge's label

    def body(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> Awaitable[Any]:
        """The parsed body; called once the caller's key is known (`ctx.key`), for `request_json`."""
        ...

    def prepare(self, gw: Gateway, ctx: RequestContext, raw: Any) -> dict[str, Any]:
        """The validated (and translated) body the stages see, within `listen.limits`; a GatewayError names what
        is wrong."""
        ...

    def answer(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> Awaitable[R_co]: ...

    def failed(self, ctx: RequestContext, err: GatewayError) -> R_co: ...


async def serve(gw: Gateway, ctx: RequestContext, request: web.Request, endpoint: Endpoint[R],
                key: KeyInfo | None = None) -> R:
    """Counted in flight; authenticated before the body is read or judged (`key` when the caller looked it up
    already: a batch, once for its items); validated; answered. A GatewayError becomes the endpoint's error
    answer, a bug a 500 (the app's middleware answers it); metered once, whatever happened."""
    kind = endpoint.kind
    gw.in_flight(kind, +1)
    try:
        await gw.pipeline.authenticate(ctx, request, key)  # 401 before the body is read or judged
        body = endpoint.prepare(gw, ctx, await endpoint.body(gw, ctx, request))
        ctx.body, ctx.alias = body, body["model"]
        return await endpoint.answer(gw, ctx, request)
    except GatewayError as err:
        ctx.fail(err)
        return endpoint.failed(ctx, err)
    except Exception:
        ctx.status, ctx.error_type = 500, "internal_error"
        raise
    finally:
        gw.in_flight(kind, -1)
        if not ctx.delegated:
            gw.pipeline.meter.finish(ctx)


async def request_json(gw: Gateway, ctx: RequestContext, request: web.Request) -> dict[str, Any]:
    """An authenticated request's JSON object: the raw body read once; for a key with `signing: required` its
    signature checked over those bytes before the JSON is used (auth/signing.py); parsed within
    `listen.limits` (nesting depth, size of one string)."""
    listen = gw.cfg.listen
    raw = await read_body(request, listen.max_body_bytes)
    key = ctx.key
    if key is not None and key.signing_secret is not None:
        await gw.pipeline.auth.verify_signature(key, request, raw)
    return parse_json(raw, listen.limits)
