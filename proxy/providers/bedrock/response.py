"""Bedrock Converse / ConverseStream / Titan responses -> OpenAI shapes (pure)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.providers.base import JSON, Completion, StreamTranslator, Usage
from proxy.providers.shapes import assistant_message, chat_completion, chunk, completion_id, usage_chunk

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


class ConverseStream(StreamTranslator):
    """ConverseStream events -> chunks. `contentBlockStart` only comes for tool blocks; text deltas
    stream directly. The finish chunk goes out at `messageStop`, usage at the `metadata` that follows."""

    def __init__(self, request_body: JSON, model: str) -> None:
        super().__init__(request_body, model)
        self.id = completion_id()
        self.created = int(time.time())
        self._tools: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index

    def _chunk(self, delta: JSON, finish: str | None = None) -> bytes:
        return orjson.dumps(chunk(self.id, self.created, self.model, delta, finish))

    def _tool_index(self, block_index: int) -> int:
        return self._tools.setdefault(block_index, len(self._tools))

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        ev = orjson.loads(data) if data else {}
        if event == "messageStart":
            return [self._chunk({"role": "assistant", "content": ""})]
        if event == "contentBlockStart":
            tu = (ev.get("start") or {}).get("toolUse")
            if not isinstance(tu, dict):
                return []
            idx = self._tool_index(int(ev.get("contentBlockIndex") or 0))
            call = {"index": idx, "id": tu.get("toolUseId") or "", "type": "function",
                    "function": {"name": tu.get("name") or "", "arguments": ""}}
            return [self._chunk({"tool_calls": [call]})]
        if event == "contentBlockDelta":
            delta = ev.get("delta") or {}
            if isinstance(delta.get("text"), str):
                return [self._chunk({"content": delta["text"]})] if delta["text"] else []
            if isinstance(delta.get("toolUse"), dict):
                idx = self._tool_index(int(ev.get("contentBlockIndex") or 0))
                args = delta["toolUse"].get("input") or ""
                return [self._chunk({"tool_calls": [{"index": idx, "function": {"arguments": args}}]})]
            reasoning = (delta.get("reasoningContent") or {}).get("text")
            if reasoning:
                return [self._chunk({"reasoning_content": reasoning})]
            return []
        if event == "messageStop":
            self.finish_reason = finish_reason(ev.get("stopReason"))
            return [self._chunk({}, self.finish_reason)]
        if event == "metadata":
            self.usage = usage_from(ev.get("usage"))
            if self.include_usage:
                return [orjson.dumps(usage_chunk(self.id, self.created, self.model, self.usage))]
        return []  # contentBlockStop and events added later carry nothing for the client


def from_titan(d: Any) -> tuple[list[float], int]:
    """A Titan text-embeddings `invoke` answer -> (vector, input tokens)."""
    if not isinstance(d, dict) or not isinstance(d.get("embedding"), list):
        raise ValueError("no `embedding` in the Titan response")
    return d["embedding"], int(d.get("inputTextTokenCount") or 0)
