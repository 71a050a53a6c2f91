"""The OpenAI Responses API inbound (`POST /v1/responses`): request.py (Responses request -> chat completions
body), response.py (chat completion -> Response), stream.py (chunks -> the typed `response.*` events). Errors are
OpenAI's own shape, as GatewayError writes them."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.context import RequestContext
from proxy.core.errors import GatewayError
from proxy.inbound.base import JSON, InboundAPI
from proxy.inbound.responses.request import to_chat
from proxy.inbound.responses.response import new_id, to_response
from proxy.inbound.responses.stream import ResponsesStream
from proxy.providers.base import Completion, NativeStream

REQUEST = "responses.request"  # ctx.notes: the client's request, echoed in the Response
RESPONSE = "response"  # ctx.notes: the finished Response (the HTTP layer stores it when asked)


class ResponsesAPI(InboundAPI):
    kind = "responses"
    messages_field = "input"

    def chat_body(self, body: JSON, unsupported: list[Exception] | None = None) -> JSON:
        return to_chat(body, unsupported)

    def translate(self, ctx: RequestContext, body: JSON, native: bool = False) -> JSON:
        chat = super().translate(ctx, body, native)
        ctx.notes[REQUEST] = body
        return chat

    def native_response(self, ctx: RequestContext, completion: Completion) -> bytes:
        resp = ctx.notes[RESPONSE] = completion.data  # what `store` keeps, as the upstream made it
        if resp is not None and _echo_previous(ctx, resp):
            return orjson.dumps(resp)
        return completion.body

    def native_end(self, ctx: RequestContext, stream: NativeStream) -> None:
        if stream.final is not None:
            ctx.notes[RESPONSE] = stream.final
            _echo_previous(ctx, stream.final)  # in the stored copy (the relayed events are the upstream's)

    def response(self, ctx: RequestContext, completion: JSON) -> bytes:
        resp = ctx.notes[RESPONSE] = to_response(completion, ctx.usage, ctx.notes[REQUEST], new_id("resp_"))
        return orjson.dumps(resp)

    def stream(self, ctx: RequestContext, body: JSON) -> ResponsesStream:
        request: dict[str, Any] = ctx.notes[REQUEST]
        return ResponsesStream(request, new_id("resp_"), body.get("model") or "", ctx.notes)

    def error(self, err: GatewayError) -> tuple[int, bytes]:
        return err.status, err.to_bytes()


def _echo_previous(ctx: RequestContext, resp: JSON) -> bool:
    """The upstream never saw `previous_response_id` (the gateway expanded it): the Response names it again, as
    OpenAI's own does. True when it changed."""
    prev = ctx.notes[REQUEST].get("previous_response_id")
    if prev is None or resp.get("previous_response_id") == prev:
        return False
    resp["previous_response_id"] = prev
    return True


__all__ = ["ResponsesAPI", "ResponsesStream", "to_chat", "to_response"]
