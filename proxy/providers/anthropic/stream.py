"""Anthropic Messages SSE events -> OpenAI `chat.completion.chunk` payloads.

Event order (anthropic.types.RawMessageStreamEvent): message_start, then per content block
content_block_start / content_block_delta* / content_block_stop, then message_delta (stop_reason,
final usage) and message_stop; `ping` may come anywhere, `error` ends the stream.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..base import JSON, StreamTranslator
from ..transport import stream_cut
from .chat import FINISH, tool_call, usage_from
from .errors import error_from_body


class AnthropicStream(StreamTranslator):
    def __init__(self, request_body: JSON, model: str) -> None:
        super().__init__(request_body, model)
        self.id = "msg"
        self.created = int(time.time())
        self._tools: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool_calls index
        self._usage: JSON = {}  # raw Anthropic counters; message_delta updates what message_start said
        self._done = False

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        d = orjson.loads(data)
        kind = event or d.get("type")
        if kind == "message_start":
            msg = d.get("message") or {}
            self.id = msg.get("id") or self.id
            self.model = msg.get("model") or self.model
            self._count(msg.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(d.get("index", 0), d.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(d.get("index", 0), d.get("delta") or {})
        if kind == "message_delta":
            self._count(d.get("usage"))
            self.finish_reason = FINISH.get((d.get("delta") or {}).get("stop_reason") or "", "stop")
            return [self._chunk({}, self.finish_reason)]
        if kind == "message_stop":
            self._done = True
            if self.include_usage and self.usage is not None:
                return [orjson.dumps({**self._head(), "choices": [], "usage": self.usage.to_openai()})]
            return []
        if kind == "error":
            raise error_from_body(None, d, None)
        return []  # ping, content_block_stop, and event types added later

    def finish(self) -> list[bytes]:
        if not self._done:
            raise stream_cut("the stream ended before message_stop")
        return []

    def _block_start(self, index: int, block: JSON) -> list[bytes]:
        if block.get("type") == "tool_use":
            k = self._tools[index] = len(self._tools)
            call = {"index": k, **tool_call(block)}
            if not block.get("input"):  # usually {} here: the input follows as input_json_delta
                call["function"]["arguments"] = ""
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []  # thinking and server-tool blocks have no OpenAI chunk

    def _block_delta(self, index: int, delta: JSON) -> list[bytes]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tools:
            return [self._chunk({"tool_calls": [{"index": self._tools[index],
                                                 "function": {"arguments": delta["partial_json"]}}]})]
        return []

    def _count(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            self.usage = usage_from(self._usage)

    def _chunk(self, delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**self._head(), "choices": [choice]})

    def _head(self) -> JSON:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model}
