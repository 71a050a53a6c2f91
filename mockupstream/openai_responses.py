"""OpenAI Responses API: POST /v1/responses (JSON, and SSE with `event:` lines), for gateways that
forward it natively (`responses: native`) instead of translating it to chat completions.

Validated like the real API (openai_responses_checks.py): Bearer auth as chat completions, unknown
fields are 400 "Unknown parameter: '<name>'.", model and input are required, input items and their
content parts are checked per type and role, every function_call_output must answer an earlier
function_call (and every function_call be answered), and stored state is never found
(`previous_response_id`, `item_reference`), so a gateway that forwards those unexpanded is caught.

Deterministic replies (`replies`, as chat completions): the text echoes the last user text (or
lorem), one word a token; `instructions` count as prompt tokens; `max_output_tokens` cuts the reply
(status incomplete, reason max_output_tokens). Tool calls (as toolcalls.py): when function tools are
offered, tool_choice is not "none" and the last item is a user message, the output is one
function_call of the forced tool (or the first) with arguments built from its parameters schema;
after function_call_output items the reply is "the tool said <outputs>".
Streams send the documented events, numbered by sequence_number from 0, and no `[DONE]` line.
`[[stream_error:server]]` in the last user text -> an `error` event then `response.failed` after the
first text delta. Faults, pacing and context_window act as for chat completions.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from mockupstream.openai import answer_fault, check_auth, error, stream_sse
from mockupstream.openai_responses_checks import validate
from mockupstream.server import STATE_KEY, MockState, read_json, send_json
from mockupstream.toolcalls import call_id, fake_arguments, markers
from proxy.providers.mock import replies
from proxy.providers.settings import MockBehaviour

Event = tuple[str, dict[str, Any]]


@dataclass
class Plan:
    words: list[str]
    tool: tuple[str, dict[str, Any]] | None
    input_tokens: int
    incomplete: bool  # cut by max_output_tokens
    flags: dict[str, str]

    @property
    def output_tokens(self) -> int:
        # a call costs what the Anthropic mock charges for one: its JSON size / 4 plus framing
        return len(orjson.dumps(self.tool[1])) // 4 + 5 if self.tool else len(self.words)


def text_of(content: Any) -> str:
    """Visible text of a message content or a function_call_output output (string or parts)."""
    if isinstance(content, str):
        return content
    return " ".join(p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict))


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The input as chat-style messages with string contents, for the shared reply and token helpers."""
    out = [{"role": "system", "content": body["instructions"]}] if body.get("instructions") else []
    if isinstance(body["input"], str):
        return [*out, {"role": "user", "content": body["input"]}]
    for item in body["input"]:
        kind = item.get("type") or "message"
        if kind == "message":
            out.append({"role": item["role"], "content": text_of(item["content"])})
        elif kind == "function_call":
            out.append({"role": "assistant", "content": ""})
        elif kind == "function_call_output":
            out.append({"role": "tool", "content": text_of(item["output"])})
    return out


def last_user_text(body: dict[str, Any]) -> str | None:
    """The text of the last input item when it is a user message (the turn the model answers)."""
    inp = body["input"]
    if isinstance(inp, str):
        return inp
    last = inp[-1]
    if (last.get("type") or "message") == "message" and last["role"] == "user":
        return text_of(last["content"])
    return None


def tool_to_call(body: dict[str, Any], user_turn: bool) -> tuple[str, dict[str, Any]] | None:
    tools = [t for t in body.get("tools") or () if t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or not user_turn:
        return None
    forced = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "function" else None
    tool = next((t for t in tools if t["name"] == forced), tools[0])
    return tool["name"], fake_arguments(tool.get("parameters"))


def tool_outputs(inp: Any) -> list[str]:
    """Texts of the trailing function_call_output items (calls and outputs may interleave)."""
    if isinstance(inp, str) or inp[-1].get("type") != "function_call_output":
        return []
    out = []
    for item in reversed(inp):
        if item.get("type") == "function_call_output":
            out.append(text_of(item["output"]))
        elif item.get("type") != "function_call":
            break
    return out[::-1]


def plan(body: dict[str, Any], messages: list[dict[str, Any]], b: MockBehaviour) -> Plan:
    user = last_user_text(body)
    flags = markers(user) if user is not None else {}
    prompt = replies.prompt_tokens(messages)
    tool = tool_to_call(body, user is not None)
    if tool is not None:
        return Plan([], tool, prompt, False, flags)
    outputs = tool_outputs(body["input"])
    words = (f"the tool said {' '.join(outputs)}".split() if outputs
             else replies.reply_words(messages, b.reply, b.reply_tokens, None))
    limit = body.get("max_output_tokens")
    incomplete = limit is not None and len(words) >= limit  # as chat completions' finish_reason "length"
    return Plan(words[:limit] if incomplete else words, None, prompt, incomplete, flags)


def _given(body: dict[str, Any], key: str, default: Any) -> Any:
    return default if body.get(key) is None else body[key]


def echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as the API echoes it: function tools with every field, strict by default."""
    if tool.get("type") != "function":
        return tool
    return {"type": "function", "name": tool["name"], "description": tool.get("description"),
            "parameters": tool.get("parameters"), "strict": _given(tool, "strict", True)}


def output_item(rid: str, p: Plan) -> dict[str, Any]:
    if p.tool is not None:
        return {"type": "function_call", "id": call_id(rid, 32, "fc_"), "call_id": call_id(rid + p.tool[0]),
                "name": p.tool[0], "arguments": orjson.dumps(p.tool[1]).decode(), "status": "completed"}
    return {"type": "message", "id": call_id(rid, 32, "msg_"), "status": "incomplete" if p.incomplete else "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": " ".join(p.words), "annotations": [],
                                              "logprobs": []}]}


def response(body: dict[str, Any], p: Plan) -> dict[str, Any]:
    """The finished Response object (the SDK model's required fields and those the API always sends)."""
    rid = "resp_" + secrets.token_hex(24)  # ids of stored objects are unique, unlike chat completion ids
    return {
        "id": rid, "object": "response", "created_at": int(time.time()),
        "status": "incomplete" if p.incomplete else "completed", "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if p.incomplete else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"], "output": [output_item(rid, p)],
        "parallel_tool_calls": _given(body, "parallel_tool_calls", True),
        "temperature": _given(body, "temperature", 1.0), "top_p": _given(body, "top_p", 1.0),
        "tool_choice": _given(body, "tool_choice", "auto"),
        "tools": [echo_tool(t) for t in body.get("tools") or ()],
        "text": _given(body, "text", {"format": {"type": "text"}}), "metadata": _given(body, "metadata", {}),
        "store": _given(body, "store", True),
        "usage": {"input_tokens": p.input_tokens, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": p.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": p.input_tokens + p.output_tokens},
    }


def events(full: dict[str, Any], p: Plan) -> list[Event]:
    """The documented event sequence for `full`, each with its type and sequence_number."""
    # the published spec's Response has no null usage: it is absent until known
    live = {**{k: v for k, v in full.items() if k != "usage"}, "status": "in_progress", "incomplete_details": None,
            "output": []}
    item = full["output"][0]
    empty = {"content": []} if item["type"] == "message" else {"arguments": ""}
    out: list[Event] = [("response.created", {"response": live}), ("response.in_progress", {"response": live}),
                        ("response.output_item.added", {"output_index": 0,
                                                        "item": {**item, "status": "in_progress", **empty}})]
    ref: dict[str, Any] = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "message":
        part, ref = item["content"][0], {**ref, "content_index": 0}
        out.append(("response.content_part.added", {**ref, "part": {**part, "text": ""}}))
        for j, w in enumerate(p.words):
            out.append(("response.output_text.delta", {**ref, "delta": w if j == 0 else " " + w, "logprobs": []}))
            if j == 0 and "stream_error" in p.flags:
                return _numbered(out + _failure(live, p.flags["stream_error"] or "server"))
        out.append(("response.output_text.done", {**ref, "text": part["text"], "logprobs": []}))
        out.append(("response.content_part.done", {**ref, "part": part}))
    else:
        args = item["arguments"]
        for piece in (args[: len(args) // 2], args[len(args) // 2:]):
            out.append(("response.function_call_arguments.delta", {**ref, "delta": piece}))
        out.append(("response.function_call_arguments.done", {**ref, "arguments": args}))
    out.append(("response.output_item.done", {"output_index": 0, "item": item}))
    out.append(("response.incomplete" if p.incomplete else "response.completed", {"response": full}))
    return _numbered(out)


def _failure(live: dict[str, Any], kind: str) -> list[Event]:
    # the API's stream failure: an `error` event, then the response marked failed (no completed event)
    message = f"mock {kind.lower()} error"
    return [("error", {"code": "server_error", "message": message, "param": None}),
            ("response.failed", {"response": {**live, "status": "failed",
                                              "error": {"code": "server_error", "message": message}}})]


def _numbered(evs: list[Event]) -> list[Event]:
    return [(name, {"type": name, **data, "sequence_number": i}) for i, (name, data) in enumerate(evs)]


async def create_response(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await read_json(request, error)
    state.record(request, body)
    check_auth(request, state)
    validate(body)
    stream = bool(body.get("stream"))
    await state.delay(stream)
    messages, b = chat_messages(body), state.behaviour
    if b.context_window is not None and replies.prompt_tokens(messages) > b.context_window:
        return error(400, "Your input exceeds the context window of this model. Please adjust your input and try "
                     "again.", code="context_length_exceeded", param="input")
    if (fault := state.next_fault()) is not None:
        return await answer_fault(request, state, fault, stream)
    p = plan(body, messages, b)
    full = response(body, p)
    if not stream:
        return await send_json(request, state, full)
    evs = events(full, p)
    return await stream_sse(request, state, [orjson.dumps(d) for _, d in evs], done=False,
                            events=[name for name, _ in evs])


def add_routes(app: web.Application, state: MockState) -> None:
    app.router.add_post("/v1/responses", create_response)
