"""The Responses API spoken natively (`responses: native` on a `type: openai` provider): the client's
`POST /v1/responses` goes to the upstream's `/responses` with only the model swapped, and its answer (a Response,
or the typed `response.*` event stream) comes back as it was sent. Here: reading the usage, the answering model
and how it ended, which metering needs.

The gateway keeps the conversation state itself (`previous_response_id` was expanded into `input` before this
runs, so a fallback to a translated deployment answers the same conversation): the id is not forwarded.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.errors import GatewayError, UpstreamError
from proxy.core.usage import Usage
from proxy.providers.base import JSON, Completion, NativeStream, delivered
from proxy.providers.transport import stream_cut

WIRE = "responses"
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def request_body(body: JSON, model: str, stream: bool) -> bytes:
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["model"] = model
    if stream:
        out["stream"] = True
    else:
        out.pop("stream", None)
    return orjson.dumps(out)


def usage_of(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    cached = (u.get("input_tokens_details") or {}).get("cached_tokens") or 0
    return Usage(prompt_tokens=int(u.get("input_tokens") or 0), completion_tokens=int(u.get("output_tokens") or 0),
                 cached_tokens=int(cached))


def finish_of(resp: JSON) -> str:
    """The Response's end in chat completions' terms (the ledger's finish_reason column)."""
    if resp.get("status") == "incomplete":
        reason = (resp.get("incomplete_details") or {}).get("reason")
        return _INCOMPLETE.get(reason, "length")
    output = resp.get("output") or ()
    if any(isinstance(item, dict) and item.get("type") == "function_call" for item in output):
        return "tool_calls"
    return "stop"


def response(data: bytes, model: str) -> Completion:
    d = orjson.loads(data)
    if not isinstance(d, dict) or not isinstance(d.get("output"), list):
        raise ValueError("no `output` in the upstream Response")
    return Completion(body=data, usage=usage_of(d.get("usage")), model=d.get("model") or model,
                      finish_reason=finish_of(d), data=d, wire=WIRE)


def _failure(message: str, code: str | None) -> UpstreamError:
    return UpstreamError(502, message or "upstream stream error", kind="stream_cut", retryable=False,
                         code=code or "upstream_stream_error")


class ResponsesRelay(NativeStream):
    """The upstream's `response.*` events, relayed; `final` is the Response it ended with."""

    wire = WIRE
    # the events noted (in JSON a quote inside a string is escaped, so these bytes are a key or a type)
    markers = (b'"response.created"', b'"response.completed"', b'"response.incomplete"', b'"response.failed"',
               b'"error"')

    def __init__(self, request_body: JSON, model: str) -> None:
        super().__init__(request_body, model)
        self.started: JSON | None = None  # the Response of `response.created`

    def read(self, event: str | None, data: bytes) -> None:
        ev = orjson.loads(data)
        kind = ev.get("type") if isinstance(ev, dict) else None
        if kind == "error":
            raise delivered(_failure(str(ev.get("message") or ""), ev.get("code")))
        resp = ev.get("response") if kind and kind.startswith("response.") else None
        if not isinstance(resp, dict):
            return
        if kind == "response.created":
            self.started = resp
            self.model = resp.get("model") or self.model
        elif kind in ("response.completed", "response.incomplete"):
            self.final, self.model = resp, resp.get("model") or self.model
            self.usage, self.finish_reason = usage_of(resp.get("usage")), finish_of(resp)
        elif kind == "response.failed":
            err = resp.get("error") or {}
            self.usage = usage_of(resp.get("usage"))
            raise delivered(_failure(str(err.get("message") or ""), err.get("code")))

    def finish(self) -> list[bytes]:
        if self.final is None:
            raise stream_cut("the stream ended before response.completed")
        return []

    def error_events(self, err: GatewayError) -> bytes:
        """`error`, then `response.failed` with the Response the stream started (numbered after the last event:
        sequence numbers count the events from 0)."""
        seq = self.events
        resp = dict(self.started or {"id": "resp_failed", "object": "response", "output": []})
        resp["status"] = "failed"
        resp["error"] = {"code": "server_error", "message": err.message}
        error = {"type": "error", "code": err.code or err.type, "message": err.message, "param": err.param,
                 "sequence_number": seq}
        failed = {"type": "response.failed", "response": resp, "sequence_number": seq + 1}
        return (b"event: error\ndata: " + orjson.dumps(error) + b"\n\nevent: response.failed\ndata: "
                + orjson.dumps(failed) + b"\n\n")
