"""Bedrock ConverseStream events (decoded by eventstream.py) -> OpenAI `chat.completion.chunk` payloads."""

from __future__ import annotations

import time

import orjson

from proxy.providers.base import JSON, StreamTranslator
from proxy.providers.bedrock.response import finish_reason, usage_from
from proxy.providers.shapes import chunk, completion_id, usage_chunk


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
