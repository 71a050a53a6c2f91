"""Gemini `streamGenerateContent?alt=sse` -> OpenAI `chat.completion.chunk` payloads.

Each SSE event is a whole GenerateContentResponse holding the next piece of every candidate; function
calls arrive complete in one event. There is no end event: the last one carries `finishReason`, and
`usageMetadata` (cumulative) is read from whichever event had it last.

Per chunk, the common event is one candidate with one text part, its usage/model/id tail repeated from the
event before: after one is read in full, the next ones with the same bytes around the text are read by
parsing only the text (`TextSlot`: nothing but the text differs, so nothing else changes) and written from a
pre-serialised chunk head (`content_chunk_head`); a run of them in one upstream read is rewritten in one pass
(`shapes.TextRuns`). The bytes sent are the same every way.
"""

from __future__ import annotations

import time

import orjson

from proxy.providers.base import JSON, StreamTranslator, Usage
from proxy.providers.gemini.chat import (
    check_blocked,
    completion_id,
    finish_reason,
    read_parts,
    usage_from,
    usage_json,
)
from proxy.providers.gemini.errors import error_from_body
from proxy.providers.shapes import CONTENT_CHUNK_TAIL, TextRuns, TextSlot, content_chunk_head
from proxy.providers.transport import stream_cut

_PLAIN_EVENT = frozenset({"candidates", "usageMetadata", "modelVersion", "responseId"})
_PLAIN_CANDIDATE = frozenset({"content", "index"})
_PLAIN_CONTENT = frozenset({"parts", "role"})


class GeminiStream(TextRuns, StreamTranslator):
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
        # the shape of this stream's plain text events, once one was read (`_plain`), and what such an event
        # sets besides its chunk: candidate index, modelVersion, usageMetadata (None: leaves it as it is)
        self._slot: TextSlot | None = None
        self._slot_index = 0
        self._slot_model: str | None = None
        self._slot_usage: JSON | None = None
        self._learn = 3  # tries left to learn it
        self._stale = True  # an event was read in full since: set the above again, rebuild `_slot_head`
        self._slot_head = b""  # content chunk bytes up to the text, for `_slot_index`

    @property  # type: ignore[override]
    def usage(self) -> Usage | None:
        if self._usage is not None and self._usage is not self._usage_seen:
            self._usage_seen, self._usage_value = self._usage, usage_from(self._usage)
        return self._usage_value

    @usage.setter
    def usage(self, value: Usage | None) -> None:
        self._usage_value = value

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        slot = self._slot
        if slot is not None:
            text = slot.match(data)
            if text is not None:  # the learned event but for the text: what `_feed` would do with it
                head = self._run_head()
                return [head + orjson.dumps(text) + CONTENT_CHUNK_TAIL] if text else []
        d = orjson.loads(data)
        self._stale = True
        out = self._feed(d)
        if self._learn and self._plain(d):
            self._learn -= 1
            cand = d["candidates"][0]
            learned = TextSlot.learn(data, cand["content"]["parts"][0]["text"])
            if learned is not None:
                self._slot, self._slot_index = learned, cand.get("index", 0)
                self._slot_model, self._slot_usage = d.get("modelVersion") or None, d.get("usageMetadata") or None
        return out

    def _plain(self, d: JSON) -> bool:
        """One candidate, already started and not finished, with one text part and no other field: an event
        whose like (all bytes equal but the text) means a content chunk and no other change."""
        if type(d) is not dict or not d.keys() <= _PLAIN_EVENT or self.id is None:
            return False
        cands = d.get("candidates")
        if type(cands) is not list or len(cands) != 1 or type(cands[0]) is not dict:
            return False
        cand = cands[0]
        content, idx = cand.get("content"), cand.get("index", 0)
        if not cand.keys() <= _PLAIN_CANDIDATE or type(content) is not dict or not content.keys() <= _PLAIN_CONTENT:
            return False
        parts = content.get("parts")
        return (type(parts) is list and len(parts) == 1 and type(parts[0]) is dict and parts[0].keys() == {"text"}
                and type(parts[0]["text"]) is str and type(idx) is int and idx in self._started
                and idx not in self._finished)

    def _feed(self, d: JSON) -> list[bytes]:
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

    def _run_head(self) -> bytes:
        """The content chunk head for an event shaped like the learned one, after what such an event sets."""
        if self._stale:
            self._stale = False
            if self._slot_model is not None:
                self.model = self._slot_model
            if self._slot_usage is not None:
                self._usage = self._slot_usage
            self._slot_head = content_chunk_head(self._head(), self._slot_index)
        return self._slot_head

    def _head(self) -> JSON:
        return {"id": self.id or "chatcmpl-gemini", "object": "chat.completion.chunk",
                "created": self.created, "model": self.model}

    def _chunk(self, idx: int, delta: JSON, finish: str | None) -> bytes:
        choice = {"index": idx, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({**self._head(), "choices": [choice]})
