"""Bedrock Converse / Titan responses -> OpenAI shapes (pure); stream.py reads ConverseStream."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.providers.base import JSON, Completion, Usage
from proxy.providers.shapes import assistant_message, chat_completion, completion_id

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    return STOP_REASONS.get(stop_reason, "stop")  # malformed_model_output / malformed_tool_use / unknown


def usage_from(u: Any) -> Usage:
    """Bedrock's inputTokens exclude cache reads/writes; OpenAI's prompt_tokens include them."""
    if not isinstance(u, dict):
        return Usage()
    cache_read = int(u.get("cacheReadInputTokens") or 0)
    cache_write = int(u.get("cacheWriteInputTokens") or 0)
    return Usage(prompt_tokens=int(u.get("inputTokens") or 0) + cache_read + cache_write,
                 completion_tokens=int(u.get("outputTokens") or 0),
                 cached_tokens=cache_read, cache_write_tokens=cache_write)


def tool_call(block: JSON) -> JSON:
    return {"id": block.get("toolUseId") or "", "type": "function",
            "function": {"name": block.get("name") or "",
                         "arguments": orjson.dumps(block.get("input") or {}).decode()}}


def from_converse(d: Any, model: str) -> Completion:
    if not isinstance(d, dict) or not isinstance(d.get("output"), dict):
        raise ValueError("no `output` in the Converse response")
    blocks = (d["output"].get("message") or {}).get("content") or []
    text = "".join(b["text"] for b in blocks if isinstance(b.get("text"), str))
    calls = [tool_call(b["toolUse"]) for b in blocks if isinstance(b.get("toolUse"), dict)]
    message = assistant_message(text, calls)
    reasoning = "".join(((b.get("reasoningContent") or {}).get("reasoningText") or {}).get("text") or ""
                        for b in blocks)
    if reasoning:
        message["reasoning_content"] = reasoning  # the field OpenAI-compatible servers use for thinking
    usage, finish = usage_from(d.get("usage")), finish_reason(d.get("stopReason"))
    data = chat_completion(completion_id(), model, message, finish, usage)
    return Completion(body=orjson.dumps(data), usage=usage, model=model, finish_reason=finish, data=data)


def from_titan(d: Any) -> tuple[list[float], int]:
    """A Titan text-embeddings `invoke` answer -> (vector, input tokens)."""
    if not isinstance(d, dict) or not isinstance(d.get("embedding"), list):
        raise ValueError("no `embedding` in the Titan response")
    return d["embedding"], int(d.get("inputTextTokenCount") or 0)
