"""Mistral wire format under `/mistral/v1/...`: OpenAI-like, but strict like La Plateforme.

Unknown top-level fields (`stream_options`, `user`, `seed`, `max_completion_tokens`, ...) and
unknown message keys (`name` on a user message, `reasoning_content`, ...) are rejected with
Mistral's 422 body (`{"object": "error", "message": {"detail": [...]}, ...}`); tool-call ids must be
9 alphanumerics. Streams always carry `usage` on the last chunk (the one with `finish_reason`)
and end with `data: [DONE]`. Auth failures answer `{"message": "Unauthorized", ...}`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from mockupstream.openai import stream_sse
from mockupstream.server import STATE_KEY, MockState, abort, json_response, read_json
from mockupstream.toolcalls import call_id, openai_tool_choice, tool_result_text
from proxy.providers.mock import replies

PREFIX = "/mistral/v1"
FIELDS = {"model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
          "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
          "prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt"}
MESSAGE_FIELDS = {"system": {"role", "content"}, "user": {"role", "content"},
                  "assistant": {"role", "content", "tool_calls", "prefix"},
                  "tool": {"role", "content", "tool_call_id", "name"}}
TOOL_CHOICES = {"auto", "none", "any", "required"}
_TOOL_ID = re.compile(r"[A-Za-z0-9]{9}")


def detail_error(details: list[dict[str, Any]]) -> web.Response:
    return json_response({"object": "error", "message": {"detail": details}, "type": "invalid_request_error",
                          "param": None, "code": None}, status=422)


def message_error(status: int, message: str) -> web.Response:
    return json_response({"object": "error", "message": message, "type": "invalid_request_error",
                          "param": None, "code": None}, status=status)


def extra(loc: list[Any], value: Any) -> dict[str, Any]:
    return {"type": "extra_forbidden", "loc": ["body", *loc], "msg": "Extra inputs are not permitted",
            "input": value}


def validate(body: Any) -> None:
    if not isinstance(body, dict):
        raise abort(message_error(400, "Invalid request body"))
    details = [extra([k], v) for k, v in body.items() if k not in FIELDS]
    messages = body.get("messages")
    if not isinstance(body.get("model"), str) or not isinstance(messages, list) or not messages:
        details.append({"type": "missing", "loc": ["body", "model" if "model" not in body else "messages"],
                        "msg": "Field required", "input": None})
    for i, m in enumerate(messages if isinstance(messages, list) else []):
        role = m.get("role") if isinstance(m, dict) else None
        allowed = MESSAGE_FIELDS.get(role)  # type: ignore[arg-type]
        if allowed is None:
            details.append({"type": "union_tag_invalid", "loc": ["body", "messages", i], "input": m,
                            "msg": f"Input tag '{role}' found using 'role' does not match any of the expected "
                                   "tags: 'system', 'user', 'assistant', 'tool'"})
            continue
        details += [extra(["messages", i, role, k], v) for k, v in m.items() if k not in allowed]
        ids = [tc.get("id") for tc in m.get("tool_calls") or [] if isinstance(tc, dict)]
        ids += [m["tool_call_id"]] if role == "tool" else []
        for tid in ids:
            if not isinstance(tid, str) or not _TOOL_ID.fullmatch(tid):
                raise abort(message_error(400, f"Tool call id was {tid} but must be a-z, A-Z, 0-9, with a "
                                               "length of 9."))
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in TOOL_CHOICES:
        details.append({"type": "enum", "loc": ["body", "tool_choice"], "input": choice,
                        "msg": "Input should be 'auto', 'none', 'any' or 'required'"})
    if details:
        raise abort(detail_error(details))


def check_auth(request: web.Request, state: MockState) -> None:
    if state.api_key is not None and request.headers.get("Authorization") != f"Bearer {state.api_key}":
        raise abort(json_response({"message": "Unauthorized", "request_id": "mock"}, status=401))


def _chunks(model: str, words: list[str], p_tokens: int, finish: str) -> list[bytes]:
    out = replies.stream_chunks(model, words, p_tokens, False, finish)
    out[-1]["usage"] = {"prompt_tokens": p_tokens, "completion_tokens": len(words),
                        "total_tokens": p_tokens + len(words)}
    return [orjson.dumps(c) for c in out]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await read_json(request, message_error)
    state.record(request, body)
    check_auth(request, state)
    validate(body)
    stream = bool(body.get("stream"))
    await state.delay(stream)
    if (status := state.should_fail()) is not None:
        text = "Requests rate limit exceeded" if status == 429 else f"mock upstream error {status}"
        return json_response({"message": text, "request_id": "mock"}, status=status)
    model, messages = body["model"], body["messages"]
    p_tokens = replies.prompt_tokens(messages)
    if (tool := openai_tool_choice(body)) is not None:
        call = {"id": call_id(tool[0] + model, 9, ""), "type": "function",
                "function": {"name": tool[0], "arguments": orjson.dumps(tool[1]).decode()}}
        full = replies.chat_completion(model, [], p_tokens, "tool_calls")
        full["choices"][0]["message"] = {"role": "assistant", "content": "", "tool_calls": [call]}
        if not stream:
            return json_response(full)
        cid, created = full["id"], full["created"]
        chunks = [replies.chunk(cid, created, model, {"role": "assistant", "content": ""}, None, False),
                  replies.chunk(cid, created, model, {"tool_calls": [{"index": 0, **call}]}, "tool_calls", False)]
        chunks[-1]["usage"] = {"prompt_tokens": p_tokens, "completion_tokens": 5, "total_tokens": p_tokens + 5}
        return await stream_sse(request, state, [orjson.dumps(c) for c in chunks], done=True)
    b = state.behaviour
    result = tool_result_text(body)
    words = (f"the tool said {result}".split() if result is not None
             else replies.reply_words(messages, b.reply, b.reply_tokens, body.get("max_tokens")))
    finish = "length" if body.get("max_tokens") is not None and len(words) >= body["max_tokens"] else "stop"
    if not stream:
        return json_response(replies.chat_completion(model, words, p_tokens, finish))
    return await stream_sse(request, state, _chunks(model, words, p_tokens, finish), done=True)


async def embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await read_json(request, message_error)
    state.record(request, body)
    check_auth(request, state)
    if isinstance(body, dict) and (bad := [extra([k], v) for k, v in body.items()
                                           if k not in ("model", "input", "output_dimension", "output_dtype",
                                                        "encoding_format")]):
        return detail_error(bad)
    return json_response(replies.embeddings(body["model"], body.get("input") or "", 8))


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.record(request, None)
    check_auth(request, state)
    return json_response({"object": "list", "data": [{"id": "mistral-small-latest", "object": "model",
                                                      "created": 0, "owned_by": "mistralai"}]})


def add_routes(app: web.Application, state: MockState) -> None:
    app.router.add_post(PREFIX + "/chat/completions", chat_completions)
    app.router.add_post(PREFIX + "/embeddings", embeddings)
    app.router.add_get(PREFIX + "/models", models)
