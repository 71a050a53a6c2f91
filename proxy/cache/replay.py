"""Completion -> stream: the `chat.completion.chunk` payloads a live stream of the same answer sends.

Per choice: a role chunk, the content (and its logprobs) in one chunk, a refusal chunk, one chunk per
tool call with its whole arguments, then the finish chunk; with `stream_options.include_usage` every
chunk carries `"usage": null` and a last chunk with no choices carries the usage, as OpenAI does.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.providers.base import JSON


def replay_chunks(data: JSON, include_usage: bool) -> list[bytes]:
    base: JSON = {"id": data.get("id") or "", "object": "chat.completion.chunk",
                  "created": data.get("created") or 0, "model": data.get("model") or ""}
    for k in ("system_fingerprint", "service_tier"):
        if data.get(k) is not None:
            base[k] = data[k]
    out: list[bytes] = []

    def emit(index: int, delta: JSON, finish_reason: str | None = None, logprobs: Any = None) -> None:
        chunk = {**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                      "finish_reason": finish_reason}]}
        if include_usage:
            chunk["usage"] = None
        out.append(orjson.dumps(chunk))

    for choice in data.get("choices") or ():
        idx = choice.get("index") or 0
        msg = choice.get("message") or {}
        content = msg.get("content")
        tool_calls = msg.get("tool_calls") or ()
        emit(idx, {"role": msg.get("role") or "assistant", "content": "" if content is not None else None,
                   "refusal": None})
        if content:
            emit(idx, {"content": content}, logprobs=choice.get("logprobs"))
        if msg.get("refusal"):
            emit(idx, {"refusal": msg["refusal"]})
        for i, tc in enumerate(tool_calls):
            emit(idx, {"tool_calls": [{"index": i, "id": tc.get("id"), "type": tc.get("type") or "function",
                                       "function": tc.get("function") or {}}]})
        if msg.get("function_call"):
            emit(idx, {"function_call": msg["function_call"]})
        emit(idx, {}, choice.get("finish_reason"))
    if include_usage:
        out.append(orjson.dumps({**base, "choices": [], "usage": data.get("usage")}))
    return out
