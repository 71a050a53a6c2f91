"""A chat completion -> an Anthropic `Message` (`anthropic.types.Message`): content blocks (text, tool_use),
`stop_reason` and `usage` with input/output tokens (prompt-cache reads and writes apart, as Anthropic counts)."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.anthropic_wire import FINISH_TO_STOP_REASON
from proxy.core.usage import Usage
from proxy.inbound.base import JSON


def message_id(chat_id: Any) -> str:
    """Anthropic's ids start `msg_`; an upstream Anthropic id passes through as it was."""
    cid = chat_id if isinstance(chat_id, str) and chat_id else "gateway"
    return cid if cid.startswith("msg_") else "msg_" + cid.removeprefix("chatcmpl-")


def stop_reason(finish: Any) -> str:
    return FINISH_TO_STOP_REASON.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def usage(u: Usage | None) -> JSON:
    """Anthropic's `input_tokens` excludes the prompt-cache reads and writes that OpenAI's prompt includes."""
    if u is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": max(0, u.prompt_tokens - u.cached_tokens - u.cache_write_tokens),
            "output_tokens": u.completion_tokens,
            "cache_creation_input_tokens": u.cache_write_tokens,
            "cache_read_input_tokens": u.cached_tokens}


def tool_input(arguments: Any) -> JSON:
    """OpenAI's arguments string -> the object Anthropic's `input` is ({} when the model wrote no valid object)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def to_message(completion: JSON, u: Usage | None) -> JSON:
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    content: list[JSON] = []
    text = msg.get("content") or msg.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or "",
                        "input": tool_input(fn.get("arguments"))})
    return {"id": message_id(completion.get("id")), "type": "message", "role": "assistant",
            "model": completion.get("model") or "", "content": content,
            "stop_reason": stop_reason(choice.get("finish_reason")), "stop_sequence": None, "usage": usage(u)}
