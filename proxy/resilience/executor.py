"""Stage 5: resilience — run one request against an alias's deployments, then its fallbacks.

Per alias: the strategy picks the first deployment; a retryable failure moves on to the next
deployment at once (failover needs no backoff), and only a deployment already tried in this request
is retried after exponential backoff with full jitter (or its Retry-After, up to the cap). Open
breakers, exhausted rpm/tpm capacity and deployments that cannot serve this request are skipped.
`retry.attempts` bounds the tries of one alias and `timeouts.total` its time; then the fallback
chain takes over. Streams are only retried before their first chunk reached the client.

The happy path is one strategy call, one breaker read, the provider call and a few counters.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, TypeVar

from proxy.core.context import Attempt, RequestContext
from proxy.core.errors import UpstreamError, model_not_found
from proxy.core.tokens import prompt_tokens
from proxy.observability import metrics as m
from proxy.providers.base import CallOptions, ChunkStream, Completion, Provider
from proxy.providers.transport import bad_response, timeout_error
from proxy.resilience.balancer import AliasPlan, Slot
from proxy.resilience.fallback import GENERIC, REASON_NAMES, AliasFailed, exhausted, next_alias, sanitize
from proxy.resilience.retry import BREAKER_FAILURES, CLIENT, CONTENT, CONTEXT, SKIP, classify, retry_delay

if TYPE_CHECKING:
    from proxy.config import GatewayConfig
    from proxy.resilience.plans import Plans

T = TypeVar("T")
COMPLETE, EMBED, STREAM = 0, 1, 2
_clock = time.perf_counter


class Executor:
    def __init__(self, cfg: GatewayConfig, plans: Plans, providers: dict[str, Provider]) -> None:
        self.cfg = cfg
        self.providers = providers
        self.metrics = cfg.metrics.enabled
        self.plans: dict[str, AliasPlan] = plans.plans
        # the inbound APIs some deployment takes as is (Native.wire): only those requests keep their own body
        self.native_wires: frozenset[str] = frozenset().union(*(p.native_wires for p in providers.values()))

    # ------------------------------------------------------------------ public (pipeline.py)
    async def complete(self, ctx: RequestContext) -> Completion:
        return await self._run(ctx, COMPLETE)  # type: ignore[no-any-return]

    async def embed(self, ctx: RequestContext) -> Completion:
        return await self._run(ctx, EMBED)  # type: ignore[no-any-return]

    async def open_stream(self, ctx: RequestContext) -> tuple[ChunkStream, bytes | None]:
        """Open a stream and read its first chunk, so a failure before any byte reached the client can
        still be retried elsewhere."""
        return await self._run(ctx, STREAM)  # type: ignore[no-any-return]

    def speaks(self, alias: str, wire: str) -> bool:
        """Whether a deployment of `alias` takes the inbound API `wire` as is (a native forward)."""
        return self.native_slot(alias, wire) is not None

    def native_slot(self, alias: str, wire: str) -> tuple[Provider, str, CallOptions] | None:
        """The first deployment of `alias` that takes `wire` as is, for a call outside the pipeline
        (`count_tokens`): its client, upstream model and options."""
        plan = self.plans.get(alias)
        for s in plan.slots if plan is not None else ():
            if s.client is not None and wire in s.client.native_wires:
                return s.client, s.model, s.opts
        return None

    def options(self, alias: str, provider: str) -> CallOptions:
        """The call options (timeouts) one deployment of an alias gets."""
        for s in self.plans[alias].slots:
            if s.provider == provider:
                return s.opts
        raise KeyError(f"{alias}/{provider}")

    # ------------------------------------------------------------------ aliases and fallbacks
    async def _run(self, ctx: RequestContext, op: int) -> Any:
        plan = self.plans.get(ctx.served_alias or ctx.alias)
        if plan is None:
            raise model_not_found(ctx.alias)
        try:
            return await self._alias(ctx, plan, op)
        except AliasFailed as failed:
            return await self._fall_back(ctx, plan, op, failed)

    async def _fall_back(self, ctx: RequestContext, origin: AliasPlan, op: int, failed: AliasFailed) -> Any:
        visited, tried = {origin.name}, [origin.name]
        last = failed.error
        while (name := next_alias(origin, failed.reason, visited)) is not None:
            visited.add(name)
            plan = self.plans.get(name)
            if plan is None:
                continue
            tried.append(name)
            if self.metrics:
                m.FALLBACKS.labels(origin.name, name, REASON_NAMES[failed.reason]).inc()
            try:
                result = await self._alias(ctx, plan, op)
            except AliasFailed as again:
                failed = again
                last = again.error or last
                continue
            ctx.fallback = f"{origin.name}->{name}"
            ctx.served_alias = name
            return result
        retry_in = min((s.breaker.retry_in() for s in origin.slots), default=0.0)
        raise exhausted(ctx, origin.name, failed, last, tried, retry_in)

    async def _alias(self, ctx: RequestContext, plan: AliasPlan, op: int) -> Any:
        """Try one alias's deployments; returns the result or raises AliasFailed / a client error."""
        slots = plan.slots
        if not slots:
            raise AliasFailed(GENERIC, None)
        now = _clock()
        deadline = now + plan.deadline
        start = plan.start(now)
        tried = excluded = 0  # bit masks over slot indexes
        last: UpstreamError | None = None
        last_idx = -1
        retry_no = 0
        for attempt in range(plan.attempts):
            idx = self._choose(ctx, slots, start, last_idx + 1, tried, excluded)
            if idx < 0:
                break
            slot = slots[idx]
            bit = 1 << idx
            if attempt:
                if self.metrics and last is not None:
                    m.RETRIES.labels(plan.name, slot.provider, last.kind).inc()
                if tried & bit:  # a deployment this request already used: back off first
                    delay = retry_delay(retry_no, plan.backoff, plan.backoff_max, last if idx == last_idx else None)
                    retry_no += 1
                    if _clock() + delay >= deadline:
                        slot.breaker.release()
                        break
                    try:
                        await asyncio.sleep(delay)
                    except BaseException:
                        slot.breaker.release()
                        raise
            tried |= bit
            remaining = deadline - _clock()
            if remaining <= 0:
                slot.breaker.release()
                break
            try:
                return await self._attempt(ctx, plan, slot, op, remaining)
            except UpstreamError as err:
                outcome = classify(err)
                if outcome == CLIENT:
                    raise
                if outcome == CONTEXT or outcome == CONTENT:
                    raise AliasFailed(outcome, err) from None
                last, last_idx = err, idx
                if outcome == SKIP or (err.retry_after is not None and err.retry_after > plan.retry_after_max):
                    excluded |= bit  # no use retrying this one within this request
        raise AliasFailed(GENERIC, last)

    @staticmethod
    def _choose(ctx: RequestContext, slots: tuple[Slot, ...], start: int, retry_from: int, tried: int,
                excluded: int) -> int:
        """The next slot: untried ones first (in strategy order from `start`), then tried ones again
        (a retry, round-robin from the one after the last failure). Breaker `allow()` is only asked of
        the slot returned, as it may hand out a half-open probe."""
        n = len(slots)
        native = ctx.native
        # a request only an upstream speaking its API can serve (a hosted tool...): other deployments can't
        only = native.wire if native is not None and native.unsupported is not None else None
        for second_round in (False, True):
            first = retry_from % n if second_round else start
            for k in range(n):
                i = first + k
                if i >= n:
                    i -= n
                bit = 1 << i
                if excluded & bit or bool(tried & bit) != second_round:
                    continue
                s = slots[i]
                if only is not None and only not in s.client.native_wires:  # type: ignore[union-attr]
                    continue
                if s.limited and not s.state.has_capacity(s.rpm, s.tpm, prompt_tokens(ctx), _clock()):
                    continue
                if s.breaker.allow():
                    return i
            if not tried:
                break
        return -1

    # ------------------------------------------------------------------ one attempt
    async def _attempt(self, ctx: RequestContext, plan: AliasPlan, slot: Slot, op: int, remaining: float) -> Any:
        st = slot.state
        opts = slot.opts
        if ctx.traceparent:
            opts = slot.traced(ctx.traceparent)
        if remaining + 0.05 < opts.total_timeout:  # a retry: the alias deadline is nearer than `total`
            opts = CallOptions(opts.connect_timeout, min(opts.first_token_timeout, remaining),
                               opts.idle_timeout, remaining, opts.extra_headers)
        t0 = _clock()
        if slot.limited:
            st.count(prompt_tokens(ctx), t0)
        st.in_flight += 1
        st.requests += 1
        try:
            result = await self._call(ctx, slot, op, opts, remaining)
        except UpstreamError as err:
            t1 = _clock()
            st.in_flight -= 1
            ctx.attempts.append(Attempt(slot.provider, slot.model, err.status, err.kind, t1 - t0, plan.name))
            if classify(err) in BREAKER_FAILURES:
                slot.breaker.record_failure(err)
                st.note_error(err, sanitize(err.message, err.kind))
                if err.kind == "timeout":  # slowness is what p95 rules look for
                    st.observe(t1 - t0, t1)
            else:
                slot.breaker.record_success()  # it answered: the request was the problem
            raise
        except BaseException:  # cancelled (client went away): not the deployment's fault
            st.in_flight -= 1
            slot.breaker.release()
            raise
        t1 = _clock()
        st.observe(t1 - t0, t1)
        slot.breaker.record_success()
        attempt = Attempt(slot.provider, slot.model, 200, None, t1 - t0, plan.name)
        ctx.attempts.append(attempt)
        ctx.provider, ctx.upstream_model = slot.provider, slot.model
        if op == STREAM:
            stream, first = result
            return _watch(stream, slot, attempt), first
        st.in_flight -= 1
        if slot.tpm is not None:
            st.add_tokens(result.usage.completion_tokens)
        return result

    @staticmethod
    async def _call(ctx: RequestContext, slot: Slot, op: int, opts: CallOptions, remaining: float) -> Any:
        client = slot.client
        assert client is not None
        native = ctx.native
        if native is not None and native.wire not in client.native_wires:
            native = None
        try:
            if op == STREAM:
                # headers and the first chunk within first_token: until then a failure can be retried
                async with asyncio.timeout(min(opts.first_token_timeout, remaining)):
                    stream = (await client.stream(ctx.body, slot.model, opts) if native is None else
                              await client.stream_native(native, slot.model, opts))
                    try:
                        first = await anext(stream.frames)
                    except StopAsyncIteration:
                        await stream.aclose()
                        # an OpenAI stream always has a chunk: an empty 200 is a broken upstream
                        raise bad_response("the stream ended before its first chunk") from None
                    except BaseException:
                        await stream.aclose()
                        raise
                return stream, first
            if native is not None and op == COMPLETE:  # only HTTP providers speak another API: self-timed
                return await client.complete_native(native, slot.model, opts)
            if slot.self_timed:  # opts.total_timeout already bounded by the alias deadline
                if op == COMPLETE:
                    return await client.complete(ctx.body, slot.model, opts)
                return await client.embed(ctx.body, slot.model, opts)
            # in-process providers may not read opts: enforce the alias deadline here
            async with asyncio.timeout(remaining):
                if op == COMPLETE:
                    return await client.complete(ctx.body, slot.model, opts)
                return await client.embed(ctx.body, slot.model, opts)
        except TimeoutError:
            raise timeout_error("no first token in time" if op == STREAM else "the alias deadline passed") from None


def _watch(stream: ChunkStream, slot: Slot, attempt: Attempt) -> ChunkStream:
    """Follow a stream after it was handed to the client: its in-flight slot ends with it, and a cut
    or idle timeout mid-way counts against the deployment's breaker (it can no longer be retried)."""
    inner, close = stream.frames, stream.close
    st = slot.state
    settled = False

    def settle(err: UpstreamError | None) -> None:
        nonlocal settled
        if settled:
            return
        settled = True
        st.in_flight -= 1
        if err is not None:
            attempt.status, attempt.error = err.status, err.kind
            if classify(err) in BREAKER_FAILURES:
                slot.breaker.record_failure(err)
                st.note_error(err, sanitize(err.message, err.kind))
        elif slot.tpm is not None and stream.usage is not None:
            st.add_tokens(stream.usage.completion_tokens)

    async def frames():  # type: ignore[no-untyped-def]
        try:
            async for block in inner:
                yield block
        except UpstreamError as err:
            settle(err)
            raise
        finally:
            settle(None)

    async def close_watched() -> None:
        settle(None)
        if close is not None:
            await close()

    return ChunkStream(frames(), stream.translator, close_watched)  # 1:1 pass-through
