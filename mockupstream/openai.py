"""OpenAI wire format: /v1/chat/completions (JSON and SSE), /v1/embeddings, /v1/models (the Responses API,
/v1/responses, is openai_responses.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from mockupstream.server import STATE_KEY, MockState, abort, fault_response, json_response, read_json, send_json
from proxy.providers.mock import replies

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def error(status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
          param: str | None = None, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": "1"} if status == 429 else None
    if retry_after is not None and status in (429, 503):
        headers = {"Retry-After": f"{retry_after:g}"}
    if status == 429:
        type, code = "rate_limit_error" if type == "invalid_request_error" else type, code or "rate_limit_exceeded"
    elif status >= 500:
        type = "server_error"
    return json_response({"error": {"message": message, "type": type, "param": param, "code": code}},
                         status=status, headers=headers)


def check_auth(request: web.Request, state: MockState) -> None:
    if state.api_key is None:
        return
    auth = request.headers.get("Authorization", "")
    if auth != f"Bearer {state.api_key}":
        raise abort(error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))


def validate_chat(body: Any) -> None:
    """What OpenAI itself rejects; the gateway must never send these."""
    if not isinstance(body, dict):
        raise abort(error(400, "request body must be a JSON object"))
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise abort(error(400, "you must provide a model parameter", param="model"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise abort(error(400, "'messages' must be a non-empty array", param="messages"))
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise abort(error(400, f"Invalid value for 'messages[{i}].role'", param=f"messages[{i}].role"))
    opts = body.get("stream_options")
    if opts is not None and not body.get("stream"):
        raise abort(error(400, "stream_options is only allowed when stream is true", param="stream_options"))
    if "max_tokens" in body and body["max_tokens"] is not None and not isinstance(body["max_tokens"], int):
        raise abort(error(400, "max_tokens must be an integer", param="max_tokens"))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await read_json(request, error)
    state.record(request, body)
    check_auth(request, state)
    validate_chat(body)
    stream = bool(body.get("stream"))
    await state.delay(stream)
    b = state.behaviour
    if b.context_window is not None and replies.prompt_tokens(body["messages"]) > b.context_window:
        return error(400, f"This model's maximum context length is {b.context_window} tokens. Please reduce "
                     "the length of the messages.", code="context_length_exceeded", param="messages")
    if (fault := state.next_fault()) is not None:
        return await answer_fault(request, state, fault, stream)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    words = replies.reply_words(body["messages"], b.reply, b.reply_tokens, max_tokens)
    p_tokens = replies.prompt_tokens(body["messages"])
    finish = "length" if max_tokens is not None and len(words) >= max_tokens else "stop"
    if not stream:
        return await send_json(request, state, replies.chat_completion(body["model"], words, p_tokens, finish))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return await stream_sse(request, state,
                            [orjson.dumps(c) for c in
                             replies.stream_chunks(body["model"], words, p_tokens, include_usage, finish)],
                            done=True)


async def answer_fault(request: web.Request, state: MockState, fault: int | str,
                       stream: bool) -> web.StreamResponse:
    """An injected fault in OpenAI's words (chat completions, embeddings and the Responses API)."""
    if fault == "content_filter":
        return error(400, "The response was filtered due to the prompt triggering the content management "
                     "policy.", code="content_filter", param="prompt")
    if isinstance(fault, str):
        return await fault_response(request, fault, stream)
    return error(fault, f"mock upstream error {fault}", retry_after=state.behaviour.retry_after)


async def stream_sse(request: web.Request, state: MockState, payloads: list[bytes], done: bool,
                     events: list[str] | None = None) -> web.StreamResponse:
    """Write `data:` events with the configured pacing; cut the connection after `cut_after` events."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    gap, cut = state.gap(), state.behaviour.cut_after
    for i, payload in enumerate(payloads):
        if cut is not None and i >= cut:
            assert request.transport is not None
            request.transport.close()  # a connection dropped mid-stream, no terminator
            return resp
        if gap and i:
            await asyncio.sleep(gap)
        prefix = f"event: {events[i]}\n".encode() if events else b""
        await resp.write(prefix + b"data: " + payload + b"\n\n")
    if done:
        await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await read_json(request, error)
    state.record(request, body)
    check_auth(request, state)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return error(400, "you must provide a model parameter", param="model")
    inp = body.get("input")
    if not isinstance(inp, str | list) or (isinstance(inp, list) and not inp):
        return error(400, "'input' must be a string or a non-empty array", param="input")
    dims = body.get("dimensions") or 8
    if type(dims) is not int or not 1 <= dims <= 4096:  # OpenAI: 400, "dimensions" must be a positive integer
        return error(400, "'dimensions' must be an integer from 1 to 4096", param="dimensions")
    await state.delay(False)
    if (fault := state.next_fault()) is not None:
        return await answer_fault(request, state, fault, False)
    return json_response(replies.embeddings(body["model"], inp, dims))


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.record(request, None)
    check_auth(request, state)
    return json_response({"object": "list", "data": [
        {"id": "mock-1", "object": "model", "created": 0, "owned_by": "mock"}]})


def add_routes(app: web.Application, state: MockState) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
