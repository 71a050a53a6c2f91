"""Azure OpenAI wire format: /openai/deployments/{deployment}/chat/completions|embeddings, /openai/models.

Validated like Azure: `api-version` is required (missing -> 404 "Resource not found", malformed ->
400 "API version not supported"; before 2024-09-01 `stream_options` is an unrecognized argument);
the key goes in `api-key` (or `Authorization: Bearer` for an Entra token; the mock accepts its
api_key as either); a deployment named `missing*` does not exist.
Streams open with Azure's annotation-only chunk (`prompt_filter_results`, no choices, model "").
Markers in the last user message: `[[content_filter]]` -> Azure's 400 content-filter error,
`[[output_filter]]` -> the answer is cut with `finish_reason: content_filter`.
"""

from __future__ import annotations

import re

import orjson
from aiohttp import web

from mockupstream.openai import stream_sse, validate_chat
from mockupstream.server import STATE_KEY, MockState, abort, json_response, read_json
from mockupstream.toolcalls import call_id, markers, openai_tool_choice, tool_result_text
from proxy.providers.mock import replies

_API_VERSION = re.compile(r"20\d\d-\d\d-\d\d(-preview)?")
SAFE = {k: {"filtered": False, "severity": "safe"} for k in ("hate", "self_harm", "sexual", "violence")}
FILTER_MESSAGE = ("The response was filtered due to the prompt triggering Azure OpenAI's content management "
                  "policy. Please modify your prompt and retry. To learn more about our content filtering "
                  "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")


def error(status: int, code: str, message: str, **extra: object) -> web.Response:
    headers = {"retry-after": "1", "retry-after-ms": "1000"} if status == 429 else None
    return json_response({"error": {"code": code, "message": message, **extra}}, status=status, headers=headers)


def _openai_style_error(status: int, message: str) -> web.Response:
    return error(status, "BadRequest" if status == 400 else str(status), message)


def check(request: web.Request, state: MockState) -> None:
    version = request.query.get("api-version")
    if version is None:
        raise abort(error(404, "404", "Resource not found"))
    if not _API_VERSION.fullmatch(version):
        raise abort(error(400, "BadRequest", "API version not supported"))
    if state.api_key is not None:
        key = request.headers.get("api-key")
        bearer = request.headers.get("Authorization", "")
        if key != state.api_key and bearer != f"Bearer {state.api_key}":
            raise abort(error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. "
                                          "Make sure to provide a valid key for an active subscription and use "
                                          "a correct regional API endpoint for your resource."))
    if request.match_info.get("deployment", "").startswith("missing"):
        raise abort(error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If "
                          "you created the deployment within the last 5 minutes, please wait a moment and try "
                          "again."))


def injected_failure(state: MockState) -> web.Response | None:
    status = state.should_fail()
    if status is None:
        return None
    if status == 429:
        return error(429, "429", "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have "
                                 "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry "
                                 "after 1 second.")
    return error(status, "InternalServerError" if status >= 500 else str(status), f"mock upstream error {status}")


def _tool_reply(deployment: str, body: dict, p_tokens: int) -> tuple[dict, list[bytes]]:
    name, args = openai_tool_choice(body) or ("", {})
    call = {"id": call_id(name + deployment), "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(args).decode()}}
    full = replies.chat_completion(deployment, [], p_tokens, "tool_calls")
    full["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [call]}
    full["usage"] = {"prompt_tokens": p_tokens, "completion_tokens": 5, "total_tokens": p_tokens + 5}
    cid, created = full["id"], full["created"]
    chunks = [replies.chunk(cid, created, deployment, {"role": "assistant", "content": None}, None, False),
              replies.chunk(cid, created, deployment, {"tool_calls": [{"index": 0, **call}]}, None, False),
              replies.chunk(cid, created, deployment, {}, "tool_calls", False)]
    return full, [orjson.dumps(c) for c in chunks]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await read_json(request, _openai_style_error)
    state.record(request, body)
    check(request, state)
    deployment = request.match_info["deployment"]
    if isinstance(body, dict) and "model" not in body:
        body = {**body, "model": deployment}  # Azure does not need it; the shared validator does
    validate_chat(body)
    if "stream_options" in body and request.query["api-version"][:10] < "2024-09-01":
        return json_response({"error": {"message": "Unrecognized request argument supplied: stream_options",
                                        "type": "invalid_request_error", "param": None, "code": None}},
                             status=400)
    stream = bool(body.get("stream"))
    await state.delay(stream)
    if (failed := injected_failure(state)) is not None:
        return failed
    messages = body["messages"]
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    flags = markers(replies.content_text(last_user.get("content")))
    if "content_filter" in flags:
        return json_response({"error": {
            "message": FILTER_MESSAGE, "type": None, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                **SAFE, "violence": {"filtered": True, "severity": "medium"}}}}}, status=400)
    b = state.behaviour
    p_tokens = replies.prompt_tokens(messages)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if openai_tool_choice(body) is not None:
        full, payloads = _tool_reply(deployment, body, p_tokens)
    else:
        if (result := tool_result_text(body)) is not None:
            words = f"the tool said {result}".split()
        else:
            words = replies.reply_words(messages, b.reply, b.reply_tokens, max_tokens)
        finish = "length" if max_tokens is not None and len(words) >= max_tokens else "stop"
        if "output_filter" in flags:
            words, finish = words[:1], "content_filter"
        full = replies.chat_completion(deployment, words, p_tokens, finish)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        payloads = [orjson.dumps(c) for c in
                    replies.stream_chunks(deployment, words, p_tokens, include_usage, finish)]
    if not stream:
        full["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": SAFE}]
        full["choices"][0]["content_filter_results"] = SAFE
        return json_response(full)
    head = orjson.dumps({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                         "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}]})
    return await stream_sse(request, state, [head, *payloads], done=True)


async def embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await read_json(request, _openai_style_error)
    state.record(request, body)
    check(request, state)
    inp = body.get("input") if isinstance(body, dict) else None
    if not isinstance(inp, str | list) or (isinstance(inp, list) and not inp):
        return error(400, "BadRequest", "'input' must be a string or a non-empty array")
    dims = body.get("dimensions") or 8
    if type(dims) is not int or not 1 <= dims <= 4096:
        return error(400, "BadRequest", "'dimensions' must be an integer from 1 to 4096")
    if (failed := injected_failure(state)) is not None:
        return failed
    return json_response(replies.embeddings(request.match_info["deployment"], inp, dims))


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.record(request, None)
    check(request, state)
    return json_response({"object": "list", "data": [
        {"id": "gpt-4o", "object": "model", "created_at": 0, "status": "succeeded",
         "capabilities": {"chat_completion": True, "embeddings": False}}]})


def add_routes(app: web.Application, state: MockState) -> None:
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat_completions)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", embeddings)
    app.router.add_get("/openai/models", models)
