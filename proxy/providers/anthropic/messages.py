"""The Messages API spoken natively: a client's `POST /v1/messages` (and `/v1/messages/count_tokens`) to an alias
served by Anthropic goes out with minimal change (the model swapped, the account's key and `anthropic-version`,
the client's `anthropic-beta`), so what chat completions has no place for (`thinking`, `top_k`, `cache_control`,
server tools, citations...) reaches Anthropic, and its answer (a Message, or its event stream) comes back as it
was sent. Here: reading the usage, the answering model and the stop reason, which metering needs.

`metadata` keeps only `user_id` (the one entry Anthropic accepts; the gateway reads the others as an agent's
template variables).
"""

from __future__ import annotations

import orjson

from proxy.core.anthropic_wire import error_type
from proxy.core.context import Native
from proxy.core.errors import GatewayError
from proxy.core.usage import Usage
from proxy.providers.anthropic.chat import FINISH, usage_from
from proxy.providers.anthropic.errors import error_from_body
from proxy.providers.base import JSON, Completion, NativeStream, delivered
from proxy.providers.transport import stream_cut

MESSAGES, COUNT_TOKENS = "messages", "count_tokens"
WIRES = frozenset({MESSAGES, COUNT_TOKENS})
FORWARDED_HEADERS = ("anthropic-beta",)


def request_body(native: Native, model: str, stream: bool) -> bytes:
    out = dict(native.body)
    out["model"] = model
    if native.wire == COUNT_TOKENS:
        return orjson.dumps(out)
    meta = out.get("metadata")
    if isinstance(meta, dict) and meta.keys() - {"user_id"}:
        out["metadata"] = {"user_id": meta["user_id"]} if "user_id" in meta else {}
        if not out["metadata"]:
            del out["metadata"]
    if stream:
        out["stream"] = True
    else:
        out.pop("stream", None)
    return orjson.dumps(out)


def headers(base: dict[str, str], native: Native) -> dict[str, str]:
    if not native.headers:
        return base
    return {**base, **{k: v for k, v in native.headers.items() if k in FORWARDED_HEADERS}}


def response(wire: str, data: bytes, model: str) -> Completion:
    d = orjson.loads(data)
    if not isinstance(d, dict):
        raise ValueError("the upstream answer is not a JSON object")
    if wire == COUNT_TOKENS:
        if type(d.get("input_tokens")) is not int:
            raise ValueError("no `input_tokens` in the upstream count")
        return Completion(body=data, usage=Usage(prompt_tokens=d["input_tokens"]), model=model, data=d, wire=wire)
    if not isinstance(d.get("content"), list):
        raise ValueError("no `content` in the Anthropic response")
    return Completion(body=data, usage=usage_from(d.get("usage")), model=d.get("model") or model,
                      finish_reason=FINISH.get(d.get("stop_reason") or "", "stop"), data=d, wire=wire)


class MessagesRelay(NativeStream):
    """Anthropic's stream events, relayed: usage from message_start and message_delta, the stop reason."""

    wire = MESSAGES
    # the events noted; content deltas and pings are relayed without being parsed
    markers = (b'"message_start"', b'"message_delta"', b'"message_stop"', b'"error"')

    def __init__(self, request_body: JSON, model: str) -> None:
        super().__init__(request_body, model)
        self._usage: JSON = {}  # raw counters; message_delta's replace message_start's
        self._done = False

    def read(self, event: str | None, data: bytes) -> None:
        d = orjson.loads(data)
        kind = event or (d.get("type") if isinstance(d, dict) else None)
        if kind == "message_start":
            msg = d.get("message") or {}
            self.model = msg.get("model") or self.model
            self._count(msg.get("usage"))
        elif kind == "message_delta":
            self._count(d.get("usage"))
            self.finish_reason = FINISH.get((d.get("delta") or {}).get("stop_reason") or "", "stop")
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise delivered(error_from_body(None, d, None))

    def finish(self) -> list[bytes]:
        if not self._done:
            raise stream_cut("the stream ended before message_stop")
        return []

    def _count(self, u: object) -> None:
        if isinstance(u, dict):
            self._usage.update({k: v for k, v in u.items() if isinstance(v, int)})
            self.usage = usage_from(self._usage)

    def error_events(self, err: GatewayError) -> bytes:
        body = {"type": "error", "error": {"type": error_type(err.status), "message": err.message}}
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
