"""Stage 5: resilience — try deployments until one answers (retries, failover)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .config import Deployment, GatewayConfig, Timeouts
from .context import Attempt, RequestContext
from .errors import UpstreamError
from .providers.base import CallOptions, ChunkStream, Completion, Provider
from .routing import Router

T = TypeVar("T")


class Executor:
    def __init__(self, cfg: GatewayConfig, router: Router, providers: dict[str, Provider]) -> None:
        self.cfg = cfg
        self.router = router
        self.providers = providers
        self._opts: dict[str, CallOptions] = {}

    def options(self, alias: str, provider: str) -> CallOptions:
        cached = self._opts.get(f"{alias}\0{provider}")
        if cached is None:
            t: Timeouts = self.cfg.models[alias].timeouts or self.cfg.providers[provider].timeout
            cached = CallOptions(t.connect, t.first_token, t.idle, t.total)
            self._opts[f"{alias}\0{provider}"] = cached
        return cached

    async def _run(self, ctx: RequestContext, call: Callable[[Provider, Deployment, CallOptions], Awaitable[T]]) -> T:
        alias = ctx.served_alias
        attempts = self.cfg.models[alias].retry.attempts
        candidates = self.router.candidates(alias)
        last: UpstreamError | None = None
        for i in range(attempts):
            d = candidates[i % len(candidates)]
            provider = self.providers[d.provider]
            opts = self.options(alias, d.provider)
            if ctx.traceparent:
                opts = CallOptions(opts.connect_timeout, opts.first_token_timeout, opts.idle_timeout,
                                   opts.total_timeout, {"traceparent": ctx.traceparent})
            t0 = time.perf_counter()
            try:
                result = await call(provider, d, opts)
            except UpstreamError as err:
                ctx.attempts.append(Attempt(d.provider, d.model, err.status, err.kind, time.perf_counter() - t0,
                                            alias))
                last = err
                if not err.retryable:
                    break
                continue
            ctx.attempts.append(Attempt(d.provider, d.model, 200, None, time.perf_counter() - t0, alias))
            ctx.provider, ctx.upstream_model = d.provider, d.model
            return result
        assert last is not None
        raise last

    async def complete(self, ctx: RequestContext) -> Completion:
        return await self._run(ctx, lambda p, d, o: p.complete(ctx.body, d.model, o))

    async def embed(self, ctx: RequestContext) -> Completion:
        return await self._run(ctx, lambda p, d, o: p.embed(ctx.body, d.model, o))

    async def open_stream(self, ctx: RequestContext) -> tuple[ChunkStream, bytes | None]:
        """Open a stream and read its first chunk, so a failure before any byte reached the client can
        still be retried elsewhere."""

        async def attempt(p: Provider, d: Deployment, o: CallOptions) -> tuple[ChunkStream, bytes | None]:
            async with asyncio.timeout(o.first_token_timeout):
                stream = await p.stream(ctx.body, d.model, o)
                try:
                    first = await anext(stream.chunks)
                except StopAsyncIteration:
                    first = None
                except BaseException:
                    await stream.aclose()
                    raise
            return stream, first

        async def guarded(p: Provider, d: Deployment, o: CallOptions) -> tuple[ChunkStream, bytes | None]:
            try:
                return await attempt(p, d, o)
            except TimeoutError:
                from .providers.transport import timeout_error

                raise timeout_error("no first token in time") from None

        return await self._run(ctx, guarded)
