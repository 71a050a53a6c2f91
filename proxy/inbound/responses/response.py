"""A chat completion -> a Responses API `Response` (`openai.types.responses.Response`): output items (`message`
with `output_text`/`refusal` parts, `function_call`), `usage` with input/output tokens and their details,
`status`/`incomplete_details` from the finish reason, and the request's parameters echoed as OpenAI echoes them."""

from __future__ import annotations

import secrets
import time
from typing import Any

from proxy.core.usage import Usage
from proxy.inbound.base import JSON

# chat finish_reason -> why the Response is incomplete (anything else completed it)
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def status(finish: Any) -> tuple[str, JSON | None]:
    reason = _INCOMPLETE.get(finish) if isinstance(finish, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def usage(u: Usage) -> JSON:
    return {"input_tokens": u.prompt_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_write_tokens},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.total_tokens}


def _tools(request: JSON) -> list[JSON]:
    return [{"type": "function", "name": t.get("name"), "description": t.get("description"),
             "parameters": t.get("parameters"), "strict": t.get("strict", True)}
            for t in request.get("tools") or () if isinstance(t, dict)]


def skeleton(request: JSON, response_id: str, model: str, created_at: int | None = None) -> JSON:
    """The Response before any output: what every streamed `response.*` event carries, filled in as it goes."""
    text = request.get("text") if isinstance(request.get("text"), dict) else None
    fmt = (text or {}).get("format") or {"type": "text"}
    resp = {"id": response_id, "object": "response", "created_at": created_at or int(time.time()),
            "status": "in_progress", "background": False, "completed_at": None, "error": None,
            "incomplete_details": None, "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"), "model": model, "output": [],
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": request.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "service_tier": "default",
            "store": request.get("store", True) is not False, "temperature": request.get("temperature", 1.0),
            "text": {"format": fmt}, "tool_choice": request.get("tool_choice", "auto"), "tools": _tools(request),
            "top_p": request.get("top_p", 1.0), "truncation": request.get("truncation") or "disabled",
            "metadata": request.get("metadata") or {}}
    if isinstance(request.get("user"), str):
        resp["user"] = request["user"]
    return resp


def message_item(item_id: str, text: str, refusal: bool = False, done: bool = True) -> JSON:
    part = ({"type": "refusal", "refusal": text} if refusal
            else {"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    return {"id": item_id, "type": "message", "status": "completed" if done else "in_progress", "role": "assistant",
            "content": [part] if done else []}


def call_item(item_id: str, call_id: str, name: str, arguments: str, done: bool = True) -> JSON:
    return {"id": item_id, "type": "function_call", "status": "completed" if done else "in_progress",
            "call_id": call_id, "name": name, "arguments": arguments}


def finish(resp: JSON, finish_reason: Any, u: Usage | None) -> JSON:
    """Close a Response: status, incomplete_details, completed_at, usage."""
    resp["status"], resp["incomplete_details"] = status(finish_reason)
    if resp["status"] == "completed":
        resp["completed_at"] = int(time.time())
    if u is not None:  # the spec has no null usage: absent until known
        resp["usage"] = usage(u)
    return resp


def to_response(completion: JSON, u: Usage | None, request: JSON, response_id: str) -> JSON:
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    resp = skeleton(request, response_id, completion.get("model") or request.get("model") or "",
                    completion.get("created") if isinstance(completion.get("created"), int) else None)
    output: list[JSON] = resp["output"]
    text, refusal = msg.get("content"), msg.get("refusal")
    if isinstance(text, str) and text:
        output.append(message_item(new_id("msg_"), text))
    elif isinstance(refusal, str) and refusal:
        output.append(message_item(new_id("msg_"), refusal, refusal=True))
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        args = fn.get("arguments")
        output.append(call_item(new_id("fc_"), call.get("id") or new_id("call_"), fn.get("name") or "",
                                args if isinstance(args, str) else "{}"))
    return finish(resp, choice.get("finish_reason"), u)
