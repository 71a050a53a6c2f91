"""The pipeline's `chat.completion.chunk` payloads -> the Responses API's typed stream events
(`ResponseStreamEvent`), each `event: <type>` with a `sequence_number` counting from 0:

    response.created, response.in_progress, then per output item
    response.output_item.added, and for a message response.content_part.added / response.output_text.delta* /
    response.output_text.done / response.content_part.done, for a function call
    response.function_call_arguments.delta* / response.function_call_arguments.done, then response.output_item.done;
    finally response.completed (response.incomplete when the answer was cut by max_output_tokens or a filter).
    A stream that breaks after it started ends with `error` and `response.failed`.

An item opens on the first text or the first piece of a new tool call, and closes when the other kind starts or
the stream ends. Per chunk, the common payload is a text delta: once one was read in full, the next ones of the
same bytes around their text (base.TextSlot) are rewritten from a pre-built event head without parsing more.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.errors import GatewayError
from proxy.core.usage import Usage
from proxy.inbound.base import JSON, InboundStream, TextSlot
from proxy.inbound.responses.response import call_item, finish, message_item, new_id, skeleton

_DELTA_TAIL = b',"logprobs":[],"sequence_number":'


class ResponsesStream(InboundStream):
    def __init__(self, request: JSON, response_id: str, model: str, notes: dict[str, Any]) -> None:
        super().__init__()
        self.request, self.response_id, self.model = request, response_id, model
        self.notes = notes  # the finished Response goes to notes["response"] (the HTTP layer may store it)
        self.resp: JSON | None = None
        self.finish: str | None = None
        self.usage: Usage | None = None
        self._seq = 0
        self._item: JSON | None = None  # the open output item (in progress)
        self._index = -1  # its output_index
        self._texts: list[str] = []  # the open message's text so far / the open call's argument pieces
        self._calls: dict[int, int] = {}  # chat tool_calls index -> output_index
        self._slot: TextSlot | None = None
        self._learn = 3
        self._head = b""  # the output_text.delta event's bytes up to the delta, for the open message
        self._refusing = False  # the open message is a refusal (its part is `refusal`, its events response.refusal.*)

    # ------------------------------------------------------------------ InboundStream
    def feed(self, payload: bytes) -> bytes:
        slot = self._slot
        if slot is not None and self._head and (found := slot.text_of(payload)) is not None:
            literal, text = found
            if not text:
                return b""
            self._texts.append(text)
            seq = self._seq
            self._seq = seq + 1
            return b"%b%b%b%d}\n\n" % (self._head, literal, _DELTA_TAIL, seq)
        return self._feed(orjson.loads(payload), payload)

    def end(self, usage: Usage | None) -> bytes:
        out = [] if self.resp is not None else [self._start({})]
        if self._item is not None:
            out.append(self._close())
        resp = finish(self.resp, self.finish, usage or self.usage)  # type: ignore[arg-type]
        self.notes["response"] = resp
        kind = "response.completed" if resp["status"] == "completed" else "response.incomplete"
        out.append(self._event(kind, {"response": resp}))
        return b"".join(out)

    def error(self, err: GatewayError) -> bytes:
        out = [] if self.resp is not None else [self._start({})]
        resp = self.resp
        assert resp is not None
        resp["status"] = "failed"
        resp["error"] = {"code": "rate_limit_exceeded" if err.status == 429 else "server_error",
                         "message": err.message}
        out.append(self._event("error", {"code": err.code or err.type, "message": err.message,
                                         "param": err.param}))
        out.append(self._event("response.failed", {"response": resp}))
        return b"".join(out)

    # ------------------------------------------------------------------ chunks
    def _event(self, kind: str, data: JSON) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        body = {"type": kind, **data, "sequence_number": seq}
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def _start(self, chunk: JSON) -> bytes:
        self.resp = skeleton(self.request, self.response_id, chunk.get("model") or self.model)
        return self._event("response.created", {"response": self.resp}) + self._event(
            "response.in_progress", {"response": self.resp})

    def _feed(self, chunk: Any, payload: bytes) -> bytes:
        if not isinstance(chunk, dict):
            return b""
        out: list[bytes] = [] if self.resp is not None else [self._start(chunk)]
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if (choice.get("index") or 0) != 0:
                continue  # n is 1 here: a Response has one answer
            delta = choice.get("delta") or {}
            text, refusal = delta.get("content"), delta.get("refusal")
            if isinstance(refusal, str) and refusal and not text:
                if not self._refusing:
                    out.append(self._open_refusal())
                self._texts.append(refusal)
                out.append(self._event("response.refusal.delta", {
                    "item_id": self._item["id"], "output_index": self._index,  # type: ignore[index]
                    "content_index": 0, "delta": refusal}))
            elif isinstance(text, str) and text:
                if not self._head:
                    out.append(self._open_message())
                self._texts.append(text)
                out.append(self._event("response.output_text.delta", {
                    "item_id": self._item["id"], "output_index": self._index,  # type: ignore[index]
                    "content_index": 0, "delta": text, "logprobs": []}))
                if self._learn and delta.keys() == {"content"} and not choice.get("finish_reason"):
                    self._learn -= 1
                    self._slot = TextSlot.learn(payload, text) or self._slot
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    out.append(self._tool_call(call))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return b"".join(out)

    def _open(self, item: JSON) -> bytes:
        out = self._close() if self._item is not None else b""
        assert self.resp is not None
        self._item, self._index, self._texts, self._refusing = item, len(self.resp["output"]), [], False
        self.resp["output"].append(item)
        return out + self._event("response.output_item.added", {"output_index": self._index, "item": item})

    def _open_message(self) -> bytes:
        out = self._open(message_item(new_id("msg_"), "", done=False))
        item_id = self._item["id"]  # type: ignore[index]
        self._head = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"'
                      + item_id.encode() + b'","output_index":' + str(self._index).encode()
                      + b',"content_index":0,"delta":')
        return out + self._event("response.content_part.added", {
            "item_id": item_id, "output_index": self._index, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})

    def _open_refusal(self) -> bytes:
        out = self._open(message_item(new_id("msg_"), "", done=False))
        self._refusing = True
        return out + self._event("response.content_part.added", {
            "item_id": self._item["id"], "output_index": self._index, "content_index": 0,  # type: ignore[index]
            "part": {"type": "refusal", "refusal": ""}})

    def _tool_call(self, call: JSON) -> bytes:
        out = b""
        fn = call.get("function") or {}
        k = call.get("index") or 0
        index = self._calls.get(k)
        if index is None or (call.get("id") and index != self._index):
            out = self._open(call_item(new_id("fc_"), call.get("id") or new_id("call_"), fn.get("name") or "", "",
                                       done=False))
            index = self._calls[k] = self._index
        args = fn.get("arguments")
        if isinstance(args, str) and args and index == self._index:
            self._texts.append(args)
            out += self._event("response.function_call_arguments.delta", {
                "item_id": self._item["id"], "output_index": index, "delta": args})  # type: ignore[index]
        return out

    def _close(self) -> bytes:
        item, index, text = self._item, self._index, "".join(self._texts)
        assert item is not None and self.resp is not None
        refusing = self._refusing
        self._item, self._head, self._texts, self._refusing = None, b"", [], False
        if item["type"] == "message" and refusing:
            done = message_item(item["id"], text, refusal=True)
            out = (self._event("response.refusal.done", {"item_id": item["id"], "output_index": index,
                                                         "content_index": 0, "refusal": text})
                   + self._event("response.content_part.done", {"item_id": item["id"], "output_index": index,
                                                                 "content_index": 0, "part": done["content"][0]}))
        elif item["type"] == "message":
            done = message_item(item["id"], text)
            out = (self._event("response.output_text.done", {"item_id": item["id"], "output_index": index,
                                                              "content_index": 0, "text": text, "logprobs": []})
                   + self._event("response.content_part.done", {"item_id": item["id"], "output_index": index,
                                                                 "content_index": 0, "part": done["content"][0]}))
        else:
            done = call_item(item["id"], item["call_id"], item["name"], text)
            out = self._event("response.function_call_arguments.done", {
                "item_id": item["id"], "name": item["name"], "output_index": index, "arguments": text})
        self.resp["output"][index] = done
        return out + self._event("response.output_item.done", {"output_index": index, "item": done})
