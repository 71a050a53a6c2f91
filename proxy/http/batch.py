"""POST /v1/gateway/batch: many chat completions in one HTTP call.

    {"requests": [<chat completion request>, ...], "concurrency": 8}
 -> {"object": "gateway.batch", "results": [{"status": 200, "body": {...}}, {"status": 429, "error": {...}}]}

Results come back in input order, each with its own status. Every item runs through the same stages as
a single call — auth, admission (quotas, budgets), cache, routing, resilience, metering (its own ledger
row and log line) — through the single calls' request lifecycle (`lifecycle.serve`, with the batch's key,
looked up once before the body is read), `Pipeline.admit` and `Pipeline.answer`, without an HTTP round trip.
Identical items (same normalised request, as the cache key sees it) share one answer: the first to pass
admission runs, the others wait for it (infra's `SingleFlight`); they are each still admitted and metered,
at no charge.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from proxy.cache.keys import cache_key
from proxy.cache.stage import settle_shared
from proxy.core.context import RequestContext
from proxy.core.errors import INVALID_REQUEST, GatewayError, bad_request
from proxy.core.identity import KeyInfo
from proxy.gateway import GATEWAY, Gateway
from proxy.http.lifecycle import serve
from proxy.http.limits import parse_json, read_body
from proxy.http.openai_api import new_context, validate_chat
from proxy.infra.asyncutil import SingleFlight
from proxy.providers.base import Completion


class _Batch:
    def __init__(self, gw: Gateway, request: web.Request, key: KeyInfo, concurrency: int, request_id: str) -> None:
        self.gw = gw
        self.request = request
        self.key = key
        self.request_id = request_id
        self.sem = asyncio.Semaphore(concurrency)
        # identical items (by cache key) share the first one's answer, also once it has finished
        self.answers: SingleFlight[tuple[Completion, RequestContext]] = SingleFlight(keep=True)

    async def item(self, i: int, body: Any) -> bytes:
        ctx = new_context(self.request, "chat")
        ctx.request_id = f"{self.request_id}-{i}"
        return await serve(self.gw, ctx, self.request, _Item(self, body), self.key)  # the batch's key, looked up once

    async def answer(self, ctx: RequestContext) -> Completion:
        pipeline = self.gw.pipeline
        async with self.sem:
            await pipeline.admit(ctx)
            key = cache_key("chat", ctx.alias, ctx.served_alias, "", ctx.body)
            if key is None:
                return await pipeline.answer(ctx)
            if key not in self.answers:  # the first of identical items answers for all of them, in its slot
                return await self._share(ctx, key)
        return await self._share(ctx, key)  # a duplicate: gives its slot back while it waits

    async def _share(self, ctx: RequestContext, key: str) -> Completion:
        (c, first), shared = await self.answers.run(key, lambda: self._lead(ctx))
        if shared:
            ctx.usage, ctx.finish_reason = c.usage, c.finish_reason
            if first.cache_status is not None:
                ctx.cache_status = first.cache_status
            settle_shared(ctx, self.gw.prices, self.gw.recorder, c.usage, first.provider, first.upstream_model)
            if first.cache_status == "hit":
                ctx.saved_usd = first.saved_usd
        return c

    async def _lead(self, ctx: RequestContext) -> tuple[Completion, RequestContext]:
        return await self.gw.pipeline.answer(ctx), ctx


class _Item:
    """One batch item as an `Endpoint` of the request lifecycle (proxy/http/lifecycle.py); it answers a result
    object."""

    __slots__ = ("batch", "raw")
    kind = "chat"

    def __init__(self, batch: _Batch, raw: Any) -> None:
        self.batch = batch
        self.raw = raw

    async def body(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> Any:
        return self.raw  # parsed (and its signature verified) once for the whole batch

    def prepare(self, gw: Gateway, ctx: RequestContext, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise bad_request("Each batch item must be a chat completion request object.")
        validate_chat(raw, gw.cfg.listen.limits)
        if raw.get("stream"):
            raise bad_request("Streaming is not available inside a batch; drop 'stream'.", param="stream")
        return raw

    async def answer(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> bytes:
        c = await self.batch.answer(ctx)
        return b'{"status":200,' + _meta(ctx) + b'"body":' + c.body + b"}"

    def failed(self, ctx: RequestContext, err: GatewayError) -> bytes:
        out: dict[str, Any] = {"status": err.status, "request_id": ctx.request_id, "error": err.body()["error"]}
        if err.headers:
            out["headers"] = err.headers
        return orjson.dumps(out)


def _meta(ctx: RequestContext) -> bytes:
    meta: dict[str, Any] = {"request_id": ctx.request_id}
    if ctx.cache_status is not None:
        meta["cache"] = ctx.cache_status
    if ctx.notes.get("coalesced"):
        meta["coalesced"] = True
    meta["cost_usd"] = round(ctx.cost_usd, 8)
    return orjson.dumps(meta)[1:-1] + b","


async def batch(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    limits = gw.cfg.batch
    # one clear 401 for a bad key, before the body is read or judged, instead of the same error on every item
    key = await gw.pipeline.auth.authenticate(request)
    listen = gw.cfg.listen
    raw = await read_body(request, listen.max_body_bytes)
    await gw.pipeline.auth.verify_signature(key, request, raw)
    body = parse_json(raw, listen.limits)
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        raise bad_request("'requests' must be a non-empty array of chat completion requests.", param="requests")
    if len(items) > limits.max_items:
        raise GatewayError(413, f"A batch holds at most {limits.max_items} requests; this one has {len(items)}. "
                           "Split it into several batches.", INVALID_REQUEST, code="batch_too_large",
                           param="requests")
    concurrency = body.get("concurrency", limits.max_concurrency)
    if type(concurrency) is not int or concurrency < 1:
        raise bad_request("'concurrency' must be a positive integer.", param="concurrency")
    rid = new_context(request, "chat").request_id
    runner = _Batch(gw, request, key, min(concurrency, limits.max_concurrency), rid)
    results = await asyncio.gather(*(runner.item(i, b) for i, b in enumerate(items)))
    out = b'{"object":"gateway.batch","results":[' + b",".join(results) + b"]}"
    return web.Response(body=out, content_type="application/json", headers={"x-request-id": rid})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/gateway/batch", batch)
