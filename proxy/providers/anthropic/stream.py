"""Anthropic Messages SSE events -> OpenAI `chat.completion.chunk` payloads.

Event order (anthropic.types.RawMessageStreamEvent): message_start, then per content block
content_block_start / content_block_delta* / content_block_stop, then message_delta (stop_reason,
final usage) and message_stop; `ping` may come anywhere, `error` ends the stream.

Per chunk, the common event is a `text_delta`: after the first one is read in full, the next ones of the same
shape are read by parsing only their text (`TextSlot`) and written from a pre-serialised chunk head
(`content_chunk_head`); a run of them in one upstream read is rewritten in one pass (`shapes.text_run`). The
bytes sent are the same every way.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.providers.anthropic.chat import FINISH, tool_call, usage_from
from proxy.providers.anthropic.errors import error_from_body
from proxy.providers.base import JSON, StreamTranslator
from proxy.providers.shapes import CONTENT_CHUNK_TAIL, TextRuns, TextSlot, content_chunk_head
from proxy.providers.transport import stream_cut


class AnthropicStream(TextRuns, StreamTranslator):
    _run_event = b"event: content_block_delta\n"

    def __init__(self, request_body: JSON, model: str) -> None:
        super().__init__(request_body, model)
        self.id = "msg"
        self.created = int(time.time())
        self._tools: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool_calls index
        self._usage: JSON = {}  # raw Anthropic counters; message_delta updates what message_start said
        self._done = False
        self._slot: TextSlot | None = None  # the shape of this stream's text_delta events, once one was read
        self._learn = 3  # tries left to learn it
        self._content_head: bytes | None = None  # content chunk bytes up to the text; None when id/model change

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        slot = self._slot
        if slot is not None and (event is None or event == "content_block_delta"):
            text = slot.match(data)
            if text is not None:  # what `_block_delta` does with a text_delta
                return [self._content(text)] if text else []
        d = orjson.loads(data)
        kind = event or d.get("type")
        if kind == "message_start":
            msg = d.get("message") or {}
            self.id = msg.get("id") or self.id
            self.model = msg.get("model") or self.model
            self._content_head = None
            self._count(msg.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(d.get("index", 0), d.get("content_block") or {})
        if kind == "content_block_delta":
            delta = d.get("delta") or {}
            if (self._learn and kind == d.get("type") and delta.get("type") == "text_delta"
                    and type(delta.get("text")) is str):  # learn its shape (the `type` in it makes the kind)
                self._learn -= 1
                self._slot = TextSlot.learn(data, delta["text"]) or self._slot
            return self._block_delta(d.get("index", 0), delta)
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
            text = delta["text"]
            return [self._content(text) if type(text) is str else self._chunk({"content": text})]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tools:
            return [self._chunk({"tool_calls": [{"index": self._tools[index],
                                                 "function": {"arguments": delta["partial_json"]}}]})]
        return []

    def _count(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            self.usage = usage_from(self._usage)

    def _content(self, text: str) -> bytes:
        """`_chunk({"content": text})`, serialising only the text."""
        return self._text_head() + orjson.dumps(text) + CONTENT_CHUNK_TAIL

    def _run_head(self) -> bytes:
        return self._text_head()

    def _text_head(self) -> bytes:
        head = self._content_head
        if head is None:
            head = self._content_head = content_chunk_head(self._head())
        return head

    def _chunk(self, delta: JSON, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**self._head(), "choices": [choice]})

    def _head(self) -> JSON:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model}
