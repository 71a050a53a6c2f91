"""Stream -> completion: fold `chat.completion.chunk` payloads into the `chat.completion` they add up to.

Used to store a streamed answer so that later non-stream (and stream) requests can hit it. Handles
content, refusals, tool calls whose arguments arrive in pieces, the legacy `function_call`, logprobs,
several choices (`n`), and the usage chunk. Anything unreadable marks the result broken: not cached.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from proxy.providers.base import JSON, Completion, Usage

CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls"})


class _Choice:
    __slots__ = ("content", "finish_reason", "function_call", "logprobs", "refusal", "refusal_logprobs",
                 "role", "tool_calls")

    def __init__(self) -> None:
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, JSON] = {}
        self.function_call: JSON | None = None
        self.finish_reason: str | None = None
        self.logprobs: list[Any] | None = None
        self.refusal_logprobs: list[Any] | None = None

    def add(self, choice: JSON) -> None:
        delta = choice.get("delta") or {}
        if delta.get("role"):
            self.role = delta["role"]
        if delta.get("content"):
            self.content.append(delta["content"])
        if delta.get("refusal"):
            self.refusal.append(delta["refusal"])
        for tc in delta.get("tool_calls") or ():
            self._tool_call(tc)
        if fc := delta.get("function_call"):
            cur = self.function_call or {"name": "", "arguments": ""}
            cur["name"] += fc.get("name") or ""
            cur["arguments"] += fc.get("arguments") or ""
            self.function_call = cur
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        lp = choice.get("logprobs")
        if isinstance(lp, dict):
            if lp.get("content") is not None:
                self.logprobs = (self.logprobs or []) + list(lp["content"])
            if lp.get("refusal") is not None:
                self.refusal_logprobs = (self.refusal_logprobs or []) + list(lp["refusal"])

    def _tool_call(self, tc: JSON) -> None:
        idx = int(tc.get("index") or 0)
        cur = self.tool_calls.get(idx)
        if cur is None:
            cur = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            self.tool_calls[idx] = cur
        if tc.get("id"):
            cur["id"] = tc["id"]
        if tc.get("type"):
            cur["type"] = tc["type"]
        fn = tc.get("function") or {}
        cur["function"]["name"] += fn.get("name") or ""
        cur["function"]["arguments"] += fn.get("arguments") or ""

    def message(self) -> JSON:
        tool_calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        text = "".join(self.content)
        has_calls = bool(tool_calls or self.function_call)
        msg: JSON = {"role": self.role, "content": text if (text or not has_calls) else None,
                     "refusal": "".join(self.refusal) or None}
        if tool_calls:
            msg["tool_calls"] = tool_calls
        if self.function_call:
            msg["function_call"] = self.function_call
        return msg

    def logprobs_obj(self) -> JSON | None:
        if self.logprobs is None and self.refusal_logprobs is None:
            return None
        return {"content": self.logprobs, "refusal": self.refusal_logprobs}


class Accumulator:
    def __init__(self) -> None:
        self.meta: JSON = {}
        self.choices: dict[int, _Choice] = {}
        self.usage: JSON | None = None
        self.broken = False

    def feed(self, payload: bytes) -> None:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.broken = True
            return
        if not isinstance(chunk, dict):
            self.broken = True
            return
        if not self.meta:
            self.meta = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint", "service_tier")
                         if chunk.get(k) is not None}
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            idx = int(choice.get("index") or 0)
            state = self.choices.get(idx)
            if state is None:
                state = self.choices[idx] = _Choice()
            state.add(choice)

    def feed_all(self, payloads: Iterable[bytes]) -> Accumulator:
        for p in payloads:
            self.feed(p)
        return self

    def completion(self, usage: Usage | None, model: str) -> Completion | None:
        """The chat.completion, or None when the stream is not worth caching (broken, cut, filtered)."""
        if self.broken or not self.choices:
            return None
        if any(c.finish_reason not in CACHEABLE_FINISH for c in self.choices.values()):
            return None
        usage_json = self.usage if self.usage is not None else (usage or Usage()).to_openai()
        data: JSON = {
            "id": self.meta.get("id", ""),
            "object": "chat.completion",
            "created": self.meta.get("created", 0),
            "model": self.meta.get("model") or model,
            "choices": [{"index": i, "message": c.message(), "logprobs": c.logprobs_obj(),
                         "finish_reason": c.finish_reason} for i, c in sorted(self.choices.items())],
            "usage": usage_json,
        }
        for k in ("system_fingerprint", "service_tier"):
            if k in self.meta:
                data[k] = self.meta[k]
        first = data["choices"][0]["finish_reason"]
        return Completion(body=orjson.dumps(data), usage=usage or Usage.from_openai(usage_json),
                          model=data["model"], finish_reason=first, data=data)
