"""Anthropic Messages wire format under `/anthropic`: POST /anthropic/v1/messages (JSON and SSE with
`event:` lines), POST /anthropic/v1/messages/count_tokens, GET /anthropic/v1/models. Point an
`anthropic` provider's base_url (or the SDK's) at `<mock>/anthropic`; the prefix keeps `/v1/models`
free for the OpenAI format.

Validated like the real API (anthropic_checks.py): `x-api-key` (or `Authorization: Bearer`, as the
SDK 2.x sends it) must equal the mock's api_key when one is set (401 authentication_error),
`anthropic-version` is required; unknown fields are 400
"<field>: Extra inputs are not permitted"; model, max_tokens and messages are required; roles must
alternate; tool results must answer the previous turn's tool_use ids; images must be valid base64.

Deterministic replies (`replies`): the text echoes the last user text (or lorem), one word a token;
`max_tokens` cuts it (stop_reason max_tokens), a `stop_sequences` entry ends it (stop_sequence).
Tool calls (as toolcalls.py): when tools are offered, tool_choice is not `none` and the last user
turn holds no tool_result, the reply is one `tool_use` of the forced tool (or the first) with
arguments built from its input_schema - e.g. "what is the weather in Paris?" with a get_weather tool;
after tool results the reply is the text "the tool said <results>". Text blocks marked with
`cache_control` count as cache reads (cache_read_input_tokens), so caching maps can be tested.
Markers in the last user text: `[[too_long]]` -> 400 "prompt is too long", `[[output_filter]]` ->
stop_reason refusal, `[[stream_error:<kind>]]` -> a stream `error` event of type `<kind>_error`
(e.g. overloaded) after the first text delta. Faults: error_status/error_rate answer with
Anthropic's error body (429 with retry-after, 529 overloaded_error), cut_after drops the stream.

count_tokens takes the same headers and checks (with its own fields: no max_tokens, stream or
sampling) and answers {"input_tokens": N}: the words of system + messages as messages' usage
counts them (before cache reads), plus 5 per tool defined, so a test can tell it from an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from mockupstream.anthropic_checks import Checker
from mockupstream.openai import stream_sse
from mockupstream.server import STATE_KEY, MockState, abort, json_response, read_json
from mockupstream.toolcalls import call_id, fake_arguments, markers
from proxy.providers.mock import replies

PREFIX = "/anthropic"
CONTEXT_WINDOW = 200_000  # tokens (words) before "prompt is too long"
TOOL_TOKENS = 5  # count_tokens' fixed price of a tool definition, so a test can tell the mock's count from an estimate
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}


def error(status: int, message: str, etype: str | None = None) -> web.Response:
    etype = etype or ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    rid = call_id(message + etype, prefix="req_mock")
    headers = {"request-id": rid, **({"retry-after": "1"} if status == 429 else {})}
    return json_response({"type": "error", "error": {"type": etype, "message": message}, "request_id": rid},
                         status=status, headers=headers)


def check_headers(request: web.Request, state: MockState) -> None:
    # the gateway sends `x-api-key`; the SDK (2.x) sends the same key as `Authorization: Bearer`
    auth = request.headers.get("Authorization", "")
    key = request.headers.get("x-api-key") or (auth[7:] if auth.startswith("Bearer ") else None)
    if state.api_key is not None and key != state.api_key:
        raise abort(error(401, "invalid x-api-key" if key else "x-api-key header is required"))
    if not request.headers.get("anthropic-version"):
        raise abort(error(400, "anthropic-version: header is required"))


def text_of(content: Any, results: bool = True) -> str:
    """Visible text of a message/system content; tool_result contents count when `results`."""
    if isinstance(content, str):
        return content
    out = []
    for b in content or ():
        if b.get("type") == "text":
            out.append(b.get("text") or "")
        elif b.get("type") == "tool_result" and results:
            out.append(text_of(b.get("content") or ""))
    return " ".join(out)


def cached_tokens(body: dict[str, Any]) -> int:
    """Tokens up to the last `cache_control` mark in system + messages: a (always warm) cache hit."""
    system = body.get("system")
    blocks = list(system) if isinstance(system, list) else []
    for m in body["messages"]:
        blocks += m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
    marked = [i for i, b in enumerate(blocks) if b.get("cache_control")]
    return sum(replies.count_tokens(text_of([b])) for b in blocks[: marked[-1] + 1]) if marked else 0


@dataclass
class Plan:
    words: list[str]
    tool: tuple[str, dict[str, Any]] | None
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int
    cache_read: int
    flags: dict[str, str]

    @property
    def output_tokens(self) -> int:
        return len(self.words) + (len(orjson.dumps(self.tool[1])) // 4 + 5 if self.tool else 0)


def tool_to_call(body: dict[str, Any], last: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    # client tools only: a server tool (web_search, ...) is Anthropic's to run, which this mock does not act out
    tools = [t for t in body.get("tools") or () if t.get("name") and t.get("type") in (None, "custom")]
    choice = body.get("tool_choice") or {}
    if not tools or choice.get("type") == "none" or last["role"] != "user":
        return None
    if isinstance(last["content"], list) and any(b.get("type") == "tool_result" for b in last["content"]):
        return None
    tool = next((t for t in tools if t["name"] == choice.get("name")), tools[0])
    return tool["name"], fake_arguments(tool.get("input_schema"))


def prompt_tokens(body: dict[str, Any]) -> int:
    """Words of system + messages (tool results included): usage.input_tokens plus any cache reads."""
    return replies.count_tokens(text_of(body.get("system") or "")) + sum(
        replies.count_tokens(text_of(m["content"])) for m in body["messages"])


def plan(body: dict[str, Any], state: MockState) -> Plan:
    messages, b = body["messages"], state.behaviour
    last = messages[-1]
    prompt = prompt_tokens(body)
    flags = markers(text_of(last["content"], results=False)) if last["role"] == "user" else {}
    if "too_long" in flags or prompt > CONTEXT_WINDOW:
        raise abort(error(400, f"prompt is too long: {max(prompt, CONTEXT_WINDOW + 1)} tokens > "
                               f"{CONTEXT_WINDOW} maximum"))
    cache_read = cached_tokens(body)
    tool = tool_to_call(body, last)
    if tool is not None:
        return Plan([], tool, "tool_use", None, prompt - cache_read, cache_read, flags)
    results = [text_of(bl.get("content") or "") for bl in last["content"] if bl.get("type") == "tool_result"] \
        if last["role"] == "user" and isinstance(last["content"], list) else []
    if results:
        words = f"the tool said {' '.join(results)}".split()
    else:
        openai_like = [{"role": m["role"], "content": text_of(m["content"], results=False)} for m in messages]
        words = replies.reply_words(openai_like, b.reply, b.reply_tokens, None)
    stop_reason, stop_sequence = "end_turn", None
    for i, w in enumerate(words):
        hit = next((s for s in body.get("stop_sequences") or () if s and s in w), None)
        if hit is not None:
            words, stop_reason, stop_sequence = words[:i], "stop_sequence", hit
            break
    if len(words) >= body["max_tokens"]:
        words, stop_reason, stop_sequence = words[: body["max_tokens"]], "max_tokens", None
    if "output_filter" in flags:
        words, stop_reason = words[:1], "refusal"
    return Plan(words, tool, stop_reason, stop_sequence, prompt - cache_read, cache_read, flags)


def message(body: dict[str, Any], p: Plan) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": " ".join(p.words)}] if p.words else []
    if p.tool:
        content.append({"type": "tool_use", "id": call_id(p.tool[0] + body["model"], prefix="toolu_mock"),
                        "name": p.tool[0], "input": p.tool[1]})
    return {"id": call_id(orjson.dumps(body["messages"]).decode(), prefix="msg_mock"), "type": "message",
            "role": "assistant", "model": body["model"], "content": content, "stop_reason": p.stop_reason,
            "stop_sequence": p.stop_sequence, "usage": usage(p, p.output_tokens)}


def usage(p: Plan, output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": p.input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": p.cache_read}


def events(body: dict[str, Any], p: Plan) -> list[tuple[str, dict[str, Any]]]:
    """The documented event sequence for `message(body, p)`."""
    full = message(body, p)
    start = {**full, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage(p, 1)}
    out: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(full["content"]):
        if block["type"] == "text":
            out.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                "content_block": {"type": "text", "text": ""}}))
            out.append(("ping", {"type": "ping"}))
            for j, w in enumerate(p.words):
                out.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "text_delta", "text": w if j == 0 else " " + w}}))
                if j == 0 and "stream_error" in p.flags:
                    kind = (p.flags["stream_error"] or "overloaded").lower().removesuffix("error").rstrip("_")
                    out.append(("error", {"type": "error", "error": {"type": f"{kind}_error",
                                                                     "message": f"mock {kind} error"}}))
                    return out
        else:
            args = orjson.dumps(block["input"]).decode()
            out.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                "content_block": {**block, "input": {}}}))
            for piece in ("", args[: len(args) // 2], args[len(args) // 2:]):
                out.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "input_json_delta", "partial_json": piece}}))
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(("message_delta", {"type": "message_delta",
                                  "delta": {"stop_reason": p.stop_reason, "stop_sequence": p.stop_sequence},
                                  "usage": {"output_tokens": p.output_tokens}}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out


async def _accept(request: web.Request) -> tuple[MockState, Any]:
    """The request recorded, then its headers checked as Anthropic checks them: its state and JSON body."""
    state = request.app[STATE_KEY]
    body = await read_json(request, error)
    state.record(request, body)
    check_headers(request, state)
    return state, body


def _injected(state: MockState) -> web.Response | None:
    """The configured fault for this call, in Anthropic's error shape (None: answer normally)."""
    status = state.should_fail()
    if status is None:
        return None
    return error(status, "Overloaded" if status in (503, 529) else f"mock upstream error {status}")


async def messages_create(request: web.Request) -> web.StreamResponse:
    state, body = await _accept(request)
    Checker(error).body(body)
    stream = bool(body.get("stream"))
    await state.delay(stream)
    if (failed := _injected(state)) is not None:
        return failed
    p = plan(body, state)
    if not stream:
        return json_response(message(body, p), headers={"request-id": call_id(body["model"], prefix="req_mock")})
    evs = events(body, p)
    return await stream_sse(request, state, [orjson.dumps(d) for _, d in evs], done=False,
                            events=[name for name, _ in evs])


async def count_tokens(request: web.Request) -> web.Response:
    state, body = await _accept(request)
    Checker(error).count_tokens_body(body)
    await state.delay(False)
    if (failed := _injected(state)) is not None:
        return failed
    tools = len(body.get("tools") or ())
    return json_response({"input_tokens": prompt_tokens(body) + TOOL_TOKENS * tools},
                         headers={"request-id": call_id(body["model"], prefix="req_mock")})


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.record(request, None)
    check_headers(request, state)
    model = {"type": "model", "id": "claude-mock-1", "display_name": "Claude Mock 1",
             "created_at": "2025-01-01T00:00:00Z"}
    return json_response({"data": [model], "has_more": False, "first_id": model["id"], "last_id": model["id"]})


def add_routes(app: web.Application, state: MockState) -> None:
    app.router.add_post(PREFIX + "/v1/messages", messages_create)
    app.router.add_post(PREFIX + "/v1/messages/count_tokens", count_tokens)
    app.router.add_get(PREFIX + "/v1/models", models)
