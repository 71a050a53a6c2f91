"""The request pipeline, in order:

    auth -> admission (quotas, budgets) -> cache -> routing -> resilience -> provider adapter -> metering

Authentication (`authenticate`) runs before the handler reads the body, so a caller without a valid key
gets its 401 whatever it sent; the alias check (403) and everything after it (`admit`) need the body.
Each stage is an object with a small interface; app.py decides which implementation each slot gets.
This module only sequences them and turns the outcome into an HTTP response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from proxy.auth.authenticator import Authenticator, KeyInfo
from proxy.config.agents import OptimizePolicy
from proxy.core.context import RequestContext
from proxy.core.errors import GatewayError
from proxy.infra import sse
from proxy.metering.meter import Meter
from proxy.providers.base import ChunkStream, Complete, Completion, OpenStream
from proxy.resilience import Executor
from proxy.routing.router import Router

AGENT_PREFIX = "agent/"  # `model` of a call through an agent (proxy.agents)


class Admission(Protocol):
    """Quotas and budgets: raise a 429 GatewayError to refuse; add rate-limit headers to ctx.headers."""

    async def admit(self, ctx: RequestContext) -> None: ...


class CacheStage(Protocol):
    """Response cache + request coalescing around the upstream call."""

    async def lookup(self, ctx: RequestContext) -> Completion | None: ...

    async def complete(self, ctx: RequestContext, call: Complete) -> Completion: ...

    async def stream(self, ctx: RequestContext, open_stream: OpenStream) -> tuple[ChunkStream, bytes | None]: ...

    def replay(self, ctx: RequestContext, hit: Completion) -> list[bytes]: ...


class PromptOptimizer(Protocol):
    """Prompt optimisation (proxy.optimize.Optimizer): which policy applies to a request, and applying it."""

    def policy_for(self, ctx: RequestContext) -> OptimizePolicy | None: ...

    async def apply(self, ctx: RequestContext, policy: OptimizePolicy) -> None: ...


@dataclass(slots=True)
class Answer:
    """A chat call's outcome for an API that frames it itself (`Pipeline.run`): exactly one of
    `completion` (a non-stream answer, or a cache hit asked as non-stream), `replay` (a cache hit asked as a
    stream: its `chat.completion.chunk` payloads) or `stream` (a live stream of OpenAI SSE frames, `first`
    written before them when set)."""

    completion: Completion | None = None
    replay: list[bytes] | None = None
    stream: ChunkStream | None = None
    first: bytes | None = None


class Pipeline:
    def __init__(self, auth: Authenticator, admission: Admission, cache: CacheStage, router: Router,
                 executor: Executor, meter: Meter) -> None:
        self.auth = auth
        self.admission = admission
        self.cache = cache
        self.router = router
        self.executor = executor
        self.meter = meter
        # checks before auth (the per-client-IP limit): raise a GatewayError to refuse
        self.pre_auth: list[Callable[[RequestContext], Awaitable[None]]] = []
        # `model: "agent/..."`: rewrites ctx.body and ctx.alias to the agent's alias (proxy.agents, wired in app.py)
        self.expand_agent: Callable[[RequestContext], Awaitable[None]] | None = None
        # prompt optimisation of keys and aliases (proxy.optimize, installed by app.py; cheap without a policy)
        self.optimizer: PromptOptimizer | None = None

    async def authenticate(self, ctx: RequestContext, request: web.Request, key: KeyInfo | None = None) -> None:
        """Who is calling, before anything reads the body: the pre-auth checks, then the key (`key` when the
        caller looked it up already: the batch endpoint does once for all its items)."""
        for check in self.pre_auth:
            await check(ctx)
        ctx.key = key if key is not None else await self.auth.authenticate(request)

    async def admit(self, ctx: RequestContext) -> None:
        """(an agent -> its alias) -> may the key use ctx.alias -> routing resolve -> (prompt optimisation) ->
        admission; once the body named the alias."""
        assert ctx.key is not None, "authenticate() runs first"
        if ctx.alias.startswith(AGENT_PREFIX) and self.expand_agent is not None:
            await self.expand_agent(ctx)  # then the key must be allowed the agent's alias too, just below
        self.auth.authorize(ctx.key, ctx.alias)
        self.router.resolve(ctx)
        if ctx.native is not None:
            self._native_route(ctx)  # before anything is spent: a request no deployment can take is a 400 here
        opt = self.optimizer
        if opt is not None and (policy := opt.policy_for(ctx)) is not None:
            await opt.apply(ctx, policy)  # before admission: quotas and budgets see the prompt that is sent
        await self.admission.admit(ctx)

    async def chat(self, ctx: RequestContext, request: web.Request) -> web.StreamResponse:
        await self.admit(ctx)
        hit = await self.cache.lookup(ctx)
        if hit is not None:
            return await self._respond_hit(ctx, request, hit)
        if ctx.stream:
            stream, first = await self.cache.stream(ctx, lambda: self.executor.open_stream(ctx))
            return await self._respond_stream(ctx, request, stream, first)
        completion = await self.cache.complete(ctx, lambda: self.executor.complete(ctx))
        return self._respond_json(ctx, completion)

    async def answer(self, ctx: RequestContext) -> Completion:
        """cache -> routing/resilience for an authorized non-stream chat call, returning the Completion
        instead of writing HTTP (the batch endpoint runs each item through this after `admit`)."""
        c = await self.cache.lookup(ctx)
        if c is None:
            c = await self.cache.complete(ctx, lambda: self.executor.complete(ctx))
        self._answered(ctx, c)
        return c

    async def run(self, ctx: RequestContext) -> Answer:
        """The stages `chat` runs (admit, cache, routing, resilience; metering when the caller calls
        `meter.finish`), for an inbound API that speaks another wire format (`/v1/messages`): ctx.body is the
        request already translated to chat completions, and the caller frames the Answer in its own shape.
        A live stream's caller ends it with `settle_stream`."""
        await self.admit(ctx)
        if ctx.native is not None and ctx.prompt_tokens_sent is not None:
            ctx.native = None  # optimised: the prompt that goes is the chat body's
        if ctx.native is not None:
            # the upstream's own answer goes back as it came: not a chat completion the cache can keep or replay
            if ctx.stream:
                stream, first = await self.executor.open_stream(ctx)
                return Answer(stream=stream, first=first)
            c = await self.executor.complete(ctx)
            self._answered(ctx, c)
            return Answer(completion=c)
        hit = await self.cache.lookup(ctx)
        if hit is not None:
            ctx.usage, ctx.finish_reason = hit.usage, hit.finish_reason
            return Answer(replay=self.cache.replay(ctx, hit)) if ctx.stream else Answer(completion=hit)
        if ctx.stream:
            stream, first = await self.cache.stream(ctx, lambda: self.executor.open_stream(ctx))
            return Answer(stream=stream, first=first)
        c = await self.cache.complete(ctx, lambda: self.executor.complete(ctx))
        self._answered(ctx, c)
        return Answer(completion=c)

    def _native_route(self, ctx: RequestContext) -> None:
        """Whether the inbound API's own request may go upstream as is (ctx.native stays): a deployment of the
        served alias speaks that API and no agent rewrote the prompt (its template lives in the chat body only;
        prompt optimisation, which comes next, takes the translation too). Otherwise the translation serves it,
        unless it holds what only that API can carry: then that 400."""
        native = ctx.native
        assert native is not None
        if ctx.agent is None and self.executor.speaks(ctx.served_alias or ctx.alias, native.wire):
            return
        ctx.native = None
        if native.unsupported is not None:
            raise native.unsupported

    async def embeddings(self, ctx: RequestContext, request: web.Request) -> web.StreamResponse:
        await self.admit(ctx)
        hit = await self.cache.lookup(ctx)
        if hit is not None:
            return self._respond_json(ctx, hit)
        completion = await self.cache.complete(ctx, lambda: self.executor.embed(ctx))
        return self._respond_json(ctx, completion)

    # ------------------------------------------------------------------ responses
    def _answered(self, ctx: RequestContext, c: Completion) -> None:
        """A complete answer is in: its usage, and the call priced (a hit or shared answer costs nothing)."""
        ctx.usage, ctx.finish_reason = c.usage, c.finish_reason
        self.meter.cost(ctx)

    def _respond_json(self, ctx: RequestContext, c: Completion) -> web.Response:
        self._answered(ctx, c)
        headers = ctx.response_headers()
        headers["x-gateway-cost-usd"] = f"{ctx.cost_usd:.8f}"
        return web.Response(body=c.body, content_type="application/json", headers=headers)

    async def _respond_hit(self, ctx: RequestContext, request: web.Request, hit: Completion) -> web.StreamResponse:
        if not ctx.stream:
            return self._respond_json(ctx, hit)
        ctx.usage, ctx.finish_reason = hit.usage, hit.finish_reason
        headers = ctx.response_headers()
        headers["x-gateway-cost-usd"] = "0.00000000"
        resp = await sse.open_stream(request, headers)
        ctx.mark_first_token()
        await sse.end_stream(resp, sse.frames(self.cache.replay(ctx, hit)) + sse.DONE, quiet=False)
        return resp

    async def _respond_stream(self, ctx: RequestContext, request: web.Request, stream: ChunkStream,
                              first: bytes | None) -> web.StreamResponse:
        return await relay_stream(ctx, request, stream, first, _done, _error_event)


async def _done() -> bytes:
    return sse.DONE


def _error_event(err: GatewayError) -> bytes:
    return sse.error_event(err.message, err.type, err.code)


async def relay_stream(ctx: RequestContext, request: web.Request, stream: ChunkStream, first: bytes | None,
                       end: Callable[[], Awaitable[bytes]], failed: Callable[[GatewayError], bytes]
                       ) -> web.StreamResponse:
    """Write a live stream's frames as they come: `first` (read before the answer was committed to this
    deployment), the rest, then what `end()` gives. A failure after the headers left ends the stream with
    `failed(err)` rather than hang or 200-lie."""
    resp = await sse.open_stream(request, ctx.response_headers())
    ctx.mark_first_token()
    try:
        if first is not None:
            await resp.write(first)
        await sse.relay(stream.frames, resp.write)
        await sse.end_stream(resp, await end(), quiet=False)
    except GatewayError as err:
        ctx.fail(err)
        await sse.end_stream(resp, failed(err))
    except (ConnectionResetError, asyncio.CancelledError):
        await client_left(ctx, stream, resp)
        raise
    finally:
        settle_stream(ctx, stream)
    return resp


async def client_left(ctx: RequestContext, stream: ChunkStream, resp: sse.EventStream) -> None:
    """The client went away mid-stream: stop reading the upstream (nobody would read it) and the pings."""
    ctx.client_disconnected = True
    ctx.status = 499
    await stream.aclose()
    resp.stop_streaming()


def settle_stream(ctx: RequestContext, stream: ChunkStream) -> None:
    """What a drained (or broken) stream reported, for metering."""
    ctx.usage = stream.usage
    ctx.finish_reason = stream.finish_reason
    if stream.model:
        ctx.notes["answered_model"] = stream.model
