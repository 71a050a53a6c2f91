"""POST /v1/gateway/batch: many chat completions in one HTTP call.

    {"requests": [<chat completion request>, ...], "concurrency": 8}
 -> {"object": "gateway.batch", "results": [{"status": 200, "body": {...}}, {"status": 429, "error": {...}}]}

Results come back in input order, each with its own status. Every item runs through the same stages as
a single call — auth, admission (quotas, budgets), cache, routing, resilience, metering (its own ledger
row and log line) — through `Pipeline.authenticate` (with the batch's key, looked up once before the body
is read), `Pipeline.admit` and `Pipeline.answer`, without an HTTP round trip.
Identical items (same normalised request, as the cache key sees it) share one answer: the first to pass
admission runs, the others wait for it; they are each still admitted and metered, at no charge.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from proxy.auth.authenticator import KeyInfo
from proxy.cache.keys import cache_key
from proxy.cache.stage import settle_shared
from proxy.core.context import RequestContext
from proxy.core.errors import INVALID_REQUEST, GatewayError, bad_request
from proxy.gateway import GATEWAY, Gateway
from proxy.http.openai_api import new_context, parse_json, read_body, validate_chat
from proxy.providers.base import Completion

Outcome = tuple[Completion | None, GatewayError | None, RequestContext]


class _Batch:
    def __init__(self, gw: Gateway, request: web.Request, key: KeyInfo, concurrency: int, request_id: str) -> None:
        self.gw = gw
        self.request = request
        self.key = key
        self.request_id = request_id
        self.sem = asyncio.Semaphore(concurrency)
        self.leaders: dict[str, asyncio.Future[Outcome]] = {}

    async def item(self, i: int, body: Any) -> bytes:
        gw, pipeline = self.gw, self.gw.pipeline
        ctx = new_context(self.request, "chat")
        ctx.request_id = f"{self.request_id}-{i}"
        gw.in_flight("chat", +1)
        try:
            c = await self._run(ctx, body)
            return b'{"status":200,' + _meta(ctx) + b'"body":' + c.body + b"}"
        except GatewayError as err:
            ctx.fail(err)
            out: dict[str, Any] = {"status": err.status, "request_id": ctx.request_id, "error": err.body()["error"]}
            if err.headers:
                out["headers"] = err.headers
            return orjson.dumps(out)
        finally:
            gw.in_flight("chat", -1)
            pipeline.meter.finish(ctx)

    async def _run(self, ctx: RequestContext, body: Any) -> Completion:
        pipeline = self.gw.pipeline
        async with self.sem:
            if not isinstance(body, dict):
                raise bad_request("Each batch item must be a chat completion request object.")
            validate_chat(body, self.gw.cfg.listen.limits)
            if body.get("stream"):
                raise bad_request("Streaming is not available inside a batch; drop 'stream'.", param="stream")
            ctx.body, ctx.alias = body, body["model"]
            await pipeline.authenticate(ctx, self.request, self.key)  # the batch's key, looked up once
            await pipeline.admit(ctx)
            key = cache_key("chat", ctx.alias, ctx.served_alias, "", body)
            leader = self.leaders.get(key) if key is not None else None
            if leader is None:
                return await self._lead(ctx, key)
        # a duplicate: give the slot back while it waits for the identical item's answer
        c, err, first = await asyncio.shield(leader)
        if err is not None:
            raise err
        assert c is not None
        ctx.usage, ctx.finish_reason = c.usage, c.finish_reason
        if first.cache_status is not None:
            ctx.cache_status = first.cache_status
        settle_shared(ctx, self.gw.prices, self.gw.recorder, c.usage, first.provider, first.upstream_model)
        if first.cache_status == "hit":
            ctx.saved_usd = first.saved_usd
        return c

    async def _lead(self, ctx: RequestContext, key: str | None) -> Completion:
        fut: asyncio.Future[Outcome] | None = None
        if key is not None:
            fut = asyncio.get_running_loop().create_future()
            self.leaders[key] = fut
        try:
            c = await self.gw.pipeline.answer(ctx)
        except GatewayError as err:
            if fut is not None:
                fut.set_result((None, err, ctx))
            raise
        except BaseException:
            if fut is not None:
                fut.cancel()
            raise
        if fut is not None:
            fut.set_result((c, None, ctx))
        return c


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
