"""POST /v1/gateway/chains, and `model: "chain/<name>"` through /v1/chat/completions.

    {"steps": [{"name": "draft", "model": "demo", "prompt": "Write about {{ input }}"},
               {"name": "short", "model": "agent/summarize", "prompt": "{{ steps.draft.output }}",
                "on_error": "fallback:demo"}],
     "input": "...", "stream": false}            # or {"chain": "<name from chains.named>", "input": ...}
 -> {"object": "gateway.chain", "id": "chain_...", "output": "<the last answer>",
     "steps": [{name, model, status, output, served_by, usage, cost_usd, latency_ms, request_ids, error?}],
     "totals": {prompt_tokens, completion_tokens, cost_usd, latency_ms}}

With `stream: true` the answer is an SSE stream: a `gateway.chain.step` event per finished earlier step, the last
step's `chat.completion.chunk`s as they come, then a `gateway.chain` event with the summary, then `[DONE]`.
The key is checked once, before the body is read; every step then runs through the pipeline in-process
(proxy.chains.runner), metered with its own ledger row carrying the chain id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from proxy.chains import ChainRun, ChainRunner
from proxy.config.agents import ChainStep
from proxy.core.context import RequestContext
from proxy.core.errors import GatewayError, bad_request
from proxy.core.identity import KeyInfo
from proxy.gateway import GATEWAY, Gateway
from proxy.http.lifecycle import request_json
from proxy.http.openai_api import new_context
from proxy.infra import sse
from proxy.pipeline import settle_stream

_STEPS: TypeAdapter[list[ChainStep]] = TypeAdapter(list[ChainStep])


def _steps(raw: Any) -> list[ChainStep]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("'steps' must be a non-empty array of steps.", param="steps")
    try:
        return _STEPS.validate_python(raw)
    except ValidationError as err:
        e = err.errors()[0]
        where = "steps." + ".".join(str(p) for p in e["loc"])
        raise bad_request(f"Invalid '{where}': {e['msg']}", param=where) from None


def _failed(run: ChainRun, err: GatewayError) -> GatewayError:
    """A step's error, with the chain so far (what ran, what it cost) beside it."""
    return GatewayError(err.status, err.message, err.type, code=err.code, param=err.param, headers=err.headers,
                        extra={"chain": run.summary()})


class _Call:
    """One chain request: the key (looked up once), contexts for its steps, metering."""

    def __init__(self, gw: Gateway, request: web.Request, key: KeyInfo) -> None:
        self.gw = gw
        self.request = request
        self.key = key
        self.runner: ChainRunner = gw.chains

    def new_ctx(self) -> RequestContext:
        ctx = new_context(self.request, "chat")
        self.gw.in_flight("chat", +1)
        return ctx

    def finish(self, ctx: RequestContext) -> None:
        self.gw.in_flight("chat", -1)
        self.gw.pipeline.meter.finish(ctx)

    async def run_all(self, run: ChainRun, upto: int) -> None:
        await self.runner.check_budget(self.key, run)
        for i in range(upto):
            await self.runner.run_step(run, i, self.new_ctx, self.key, self.finish)


async def chains(request: web.Request) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    key = await gw.pipeline.auth.authenticate(request)  # 401 before the body is read or judged
    outer = new_context(request, "chat")
    outer.key = key
    body = await request_json(gw, outer, request)  # a signing key's signature, listen.limits
    name = body.get("chain")
    if name is not None:
        if not isinstance(name, str) or "steps" in body:
            raise bad_request("Give either 'chain' (a name from chains.named) or 'steps'.", param="chain")
        name, spec = gw.chains.named("chain/" + name)
        steps = spec.steps
    else:
        steps = _steps(body.get("steps"))
    chain_input = body.get("input", "")
    if not isinstance(chain_input, str):
        raise bad_request("'input' must be a string.", param="input")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean.", param="stream")
    call = _Call(gw, request, key)
    run = gw.chains.start(name, steps, chain_input)
    if stream:
        return await _stream(call, run)
    try:
        await call.run_all(run, len(steps))
    except GatewayError as err:
        gw.chains.finished(run, "failed")
        raise _failed(run, err) from None
    gw.chains.finished(run, "ok")
    return web.Response(body=orjson.dumps(run.summary()), content_type="application/json",
                        headers={"x-request-id": run.id, "x-gateway-chain-id": run.id})


async def _stream(call: _Call, run: ChainRun) -> web.StreamResponse:
    runner = call.runner
    await runner.check_budget(call.key, run)  # a 429 before the stream opens
    resp = await sse.open_stream(call.request, {"x-request-id": run.id, "x-gateway-chain-id": run.id})
    try:
        for i in range(len(run.steps) - 1):
            await runner.run_step(run, i, call.new_ctx, call.key, call.finish)
            await resp.write(b"event: gateway.chain.step\ndata: " + orjson.dumps(run.results[-1].as_dict()) + b"\n\n")
        ctx, answer = await runner.open_last(run, call.new_ctx, call.key, call.finish)
    except GatewayError as err:
        runner.finished(run, "failed")
        await sse.end_stream(resp, sse.error_event(err.message, err.type, err.code))
        return resp
    text: list[str] = []
    try:
        if answer.replay is not None:
            await resp.write(sse.frames(answer.replay))
            text += [_delta(p) for p in answer.replay]
        elif answer.stream is not None:
            parser = sse.BlockSSEParser()
            blocks = ([answer.first] if answer.first else [])
            for block in blocks:
                await resp.write(block)
            async for block in answer.stream.frames:
                await resp.write(block)
                blocks.append(block)
            text += [_delta(p) for b in blocks for _e, p in parser.feed(b) if p != b"[DONE]"]
            settle_stream(ctx, answer.stream)
        call.gw.pipeline.meter.cost(ctx)
        runner.settle_last(run, ctx, "".join(text))
        runner.finished(run, "ok")
        summary = b"event: gateway.chain\ndata: " + orjson.dumps(run.summary()) + b"\n\n"
        await sse.end_stream(resp, summary + sse.DONE, quiet=False)
    except GatewayError as err:
        ctx.fail(err)
        runner.finished(run, "failed")
        await sse.end_stream(resp, sse.error_event(err.message, err.type, err.code))
    except (ConnectionResetError, asyncio.CancelledError):
        ctx.client_disconnected, ctx.status = True, 499
        if answer.stream is not None:
            await answer.stream.aclose()
        resp.stop_streaming()
        raise
    finally:
        if answer.stream is not None:
            settle_stream(ctx, answer.stream)
        call.finish(ctx)
    return resp


def _delta(payload: bytes) -> str:
    try:
        choices = orjson.loads(payload).get("choices") or []
        return str((choices[0].get("delta") or {}).get("content") or "") if choices else ""
    except (orjson.JSONDecodeError, AttributeError, IndexError):
        return ""


async def chat_chain(request: web.Request, key: KeyInfo, body: dict[str, Any]) -> web.StreamResponse:
    """`model: "chain/<name>"` through /v1/chat/completions: the chain's input is the last user message; the
    earlier steps run first and the last step is answered like any chat completion (JSON or stream), its
    headers plus `x-gateway-chain-id`."""
    gw: Gateway = request.app[GATEWAY]
    name, spec = gw.chains.named(body["model"])
    call = _Call(gw, request, key)
    run = gw.chains.start(name, spec.steps, _last_user_text(body.get("messages") or []))
    stream = bool(body.get("stream"))
    outcome = "failed"
    try:
        await call.run_all(run, len(spec.steps) - 1)
        step = spec.steps[-1]
        models = [step.model] + ([step.on_error[len("fallback:"):]] if step.on_error.startswith("fallback:") else [])
        for attempt, model in enumerate(models):
            ctx = gw.chains.context(run, len(spec.steps) - 1, attempt, call.new_ctx, key)
            ctx.stream = stream
            ctx.headers["x-gateway-chain-id"] = run.id
            try:
                ctx.body = gw.chains.body(run, step, model, stream)
                ctx.alias = model
                gw.chains.remaining(run)
                resp = await gw.pipeline.chat(ctx, request)
                outcome = "ok"
                return resp
            except GatewayError as err:
                ctx.fail(err)
                if attempt + 1 == len(models):
                    raise
            finally:
                call.finish(ctx)
    finally:
        gw.chains.finished(run, outcome)
    raise AssertionError("unreachable")


def _last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/gateway/chains", chains)
