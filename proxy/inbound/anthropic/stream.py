"""The pipeline's `chat.completion.chunk` payloads -> Anthropic's stream events (`RawMessageStreamEvent`).

    message_start, ping, then per content block content_block_start / content_block_delta* (`text_delta`,
    `input_json_delta`) / content_block_stop, then message_delta (stop_reason, usage) and message_stop;
    a stream that breaks after it started ends with an `error` event.

Content goes out as it arrives: a text block opens on the first non-empty text, a tool_use block on each new
tool call (its `arguments` pieces become `input_json_delta`s), and whichever is open closes when the other kind
starts or the stream ends. Per chunk, the common payload is a text delta: once one was read in full, the next
ones of the same bytes around their text (base.TextSlot) are rewritten without parsing more than their text.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.anthropic_wire import error_type
from proxy.core.errors import GatewayError
from proxy.core.usage import Usage
from proxy.inbound.anthropic.response import message_id, stop_reason, usage
from proxy.inbound.base import JSON, InboundStream, TextSlot

_TEXT_TAIL = b"}}\n\n"


def event(name: str, data: JSON) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicStream(InboundStream):
    def __init__(self, model: str, input_tokens: int) -> None:
        super().__init__()
        self.model = model
        self.input_tokens = input_tokens  # the estimate message_start carries; message_delta has the count
        self.started = False
        self.finish: str | None = None
        self.usage: Usage | None = None  # from a usage chunk (the caller may know better: `end(usage)`)
        self._block = -1  # the open content block's index, -1 when none is open
        self._text = False  # the open block is a text block
        self._next = 0
        self._tools: dict[int, int] = {}  # chat completions tool_calls index -> content block index
        self._slot: TextSlot | None = None
        self._learn = 3
        self._text_head = b""  # the text_delta event's bytes up to the text, for the open text block

    # ------------------------------------------------------------------ InboundStream
    def feed(self, payload: bytes) -> bytes:
        slot = self._slot
        if slot is not None and self._text and (found := slot.text_of(payload)) is not None:
            literal, text = found
            return self._text_head + literal + _TEXT_TAIL if text else b""
        return self._feed(orjson.loads(payload), payload)

    def end(self, usage_: Usage | None) -> bytes:
        out = [] if self.started else [self._start({})]
        if self._block >= 0:
            out.append(self._close())
        u = usage(usage_ or self.usage)
        if usage_ is None and self.usage is None:
            u["input_tokens"] = self.input_tokens
        out.append(event("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": stop_reason(self.finish), "stop_sequence": None},
                                           "usage": u}))
        out.append(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        return b"".join(out)

    def error(self, err: GatewayError) -> bytes:
        return event("error", {"type": "error", "error": {"type": error_type(err.status), "message": err.message}})

    # ------------------------------------------------------------------ chunks
    def _feed(self, chunk: Any, payload: bytes) -> bytes:
        if not isinstance(chunk, dict):
            return b""
        out: list[bytes] = [] if self.started else [self._start(chunk)]
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if (choice.get("index") or 0) != 0:
                continue  # n is 1 here; nothing else can be told apart in Anthropic's events
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                if not self._text:
                    out.append(self._open({"type": "text", "text": ""}, text=True))
                out.append(self._text_head + orjson.dumps(text) + _TEXT_TAIL)
                if self._learn and delta.keys() == {"content"} and not choice.get("finish_reason"):
                    self._learn -= 1
                    self._slot = TextSlot.learn(payload, text) or self._slot
            for call in delta.get("tool_calls") or ():
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return b"".join(out)

    def _tool_call(self, call: Any) -> list[bytes]:
        if not isinstance(call, dict):
            return []
        out = []
        fn = call.get("function") or {}
        k = call.get("index") or 0
        block = self._tools.get(k)
        if block is None or (call.get("id") and block != self._block):
            out.append(self._open({"type": "tool_use", "id": call.get("id") or f"toolu_{k}",
                                   "name": fn.get("name") or "", "input": {}}, text=False))
            block = self._tools[k] = self._block
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            out.append(event("content_block_delta", {"type": "content_block_delta", "index": block,
                                                     "delta": {"type": "input_json_delta", "partial_json": args}}))
        return out

    def _start(self, chunk: JSON) -> bytes:
        self.started = True
        self.model = chunk.get("model") or self.model
        message = {"id": message_id(chunk.get("id")), "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self.input_tokens, "output_tokens": 0}}
        return (event("message_start", {"type": "message_start", "message": message})
                + b'event: ping\ndata: {"type": "ping"}\n\n')

    def _open(self, block: JSON, text: bool) -> bytes:
        out = self._close() if self._block >= 0 else b""
        self._block, self._text = self._next, text
        self._next += 1
        if text:
            self._text_head = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                               + str(self._block).encode() + b',"delta":{"type":"text_delta","text":')
        return out + event("content_block_start", {"type": "content_block_start", "index": self._block,
                                                   "content_block": block})

    def _close(self) -> bytes:
        index, self._block, self._text = self._block, -1, False
        return (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":' + str(index).encode()
                + b"}\n\n")
