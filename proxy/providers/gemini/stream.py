"""Gemini `streamGenerateContent?alt=sse` -> OpenAI `chat.completion.chunk` payloads.

Each SSE event is a whole GenerateContentResponse holding the next piece of every candidate; function
calls arrive complete in one event. There is no end event: the last one carries `finishReason`, and
`usageMetadata` (cumulative) is read from whichever event had it last.
"""

from __future__ import annotations

import time

import orjson

from ..base import JSON, StreamTranslator, Usage
from ..transport import stream_cut
from .chat import check_blocked, completion_id, finish_reason, read_parts, usage_from, usage_json
from .errors import error_from_body


class GeminiStream(StreamTranslator):
    def __init__(self, request_body: JSON, model: str) -> None:
        super().__init__(request_body, model)
        self.id: str | None = None
        self.created = int(time.time())
        self._started: set[int] = set()  # candidate indexes that had their role chunk
        self._with_tools: set[int] = set()
        self._finished: set[int] = set()
        self._calls = 0  # tool calls so far, for `call_<n>` ids unique within the response
        self._per_choice: dict[int, int] = {}  # OpenAI tool_calls indexes count per choice
        self._usage: JSON | None = None
        self._usage_seen: JSON | None = None

    @property  # type: ignore[override]
    def usage(self) -> Usage | None:
        if self._usage is not None and self._usage is not self._usage_seen:
            self._usage_seen, self._usage_value = self._usage, usage_from(self._usage)
        return self._usage_value

    @usage.setter
    def usage(self, value: Usage | None) -> None:
        self._usage_value = value

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        d = orjson.loads(data)
        if isinstance(d, dict) and "error" in d:  # an error after the 200 status line
            raise error_from_body(None, d["error"], None)
        check_blocked(d)
        self.id = self.id or completion_id(d)
        self.model = d.get("modelVersion") or self.model
        if d.get("usageMetadata"):
            self._usage = d["usageMetadata"]  # converted only when read: Gemini repeats it in every chunk
        out = []
        for pos, cand in enumerate(d.get("candidates") or ()):
            idx = cand.get("index", pos)
            text, calls = read_parts(cand, self._calls)
            delta: JSON = {}
            if idx not in self._started:
                self._started.add(idx)
                delta = {"role": "assistant", "content": text or (None if calls else "")}
            elif text:
                delta["content"] = text
            if calls:
                self._calls += len(calls)
                self._with_tools.add(idx)
                first = self._per_choice.get(idx, 0)
                self._per_choice[idx] = first + len(calls)
                delta["tool_calls"] = [{"index": k, **c} for k, c in enumerate(calls, first)]
            if delta:
                out.append(self._chunk(idx, delta, None))
            reason = finish_reason(cand.get("finishReason"), idx in self._with_tools)
            if reason is not None and idx not in self._finished:
                self._finished.add(idx)
                if idx == 0 or self.finish_reason is None:
                    self.finish_reason = reason
                out.append(self._chunk(idx, {}, reason))
        return out

    def finish(self) -> list[bytes]:
        if not self._finished:
            raise stream_cut("the stream ended before a finishReason")
        if self.include_usage and self._usage is not None:
            return [orjson.dumps({**self._head(), "choices": [], "usage": usage_json(self._usage)})]
        return []

    def _head(self) -> JSON:
        return {"id": self.id or "chatcmpl-gemini", "object": "chat.completion.chunk",
                "created": self.created, "model": self.model}

    def _chunk(self, idx: int, delta: JSON, finish: str | None) -> bytes:
        choice = {"index": idx, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**self._head(), "choices": [choice]})
