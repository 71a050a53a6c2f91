"""The Anthropic Messages API inbound (`POST /v1/messages`): request.py (Messages request -> chat completions
body), response.py (chat completion -> Message), stream.py (chunks -> Anthropic stream events), errors.py (error
shape and status), count.py (`count_tokens` estimate)."""

from __future__ import annotations

import orjson

from proxy.core.context import RequestContext
from proxy.core.errors import GatewayError
from proxy.core.tokens import prompt_tokens
from proxy.inbound.anthropic.errors import error_body
from proxy.inbound.anthropic.request import to_chat
from proxy.inbound.anthropic.response import to_message
from proxy.inbound.anthropic.stream import AnthropicStream
from proxy.inbound.base import JSON, InboundAPI


class AnthropicMessages(InboundAPI):
    kind = "messages"

    def chat_body(self, body: JSON, unsupported: list[Exception] | None = None) -> JSON:
        return to_chat(body, unsupported)

    def native_headers(self, ctx: RequestContext) -> dict[str, str] | None:
        headers = ctx.request_headers
        beta = headers.get("anthropic-beta") if headers is not None else None
        return {"anthropic-beta": beta} if beta else None

    def response(self, ctx: RequestContext, completion: JSON) -> bytes:
        return orjson.dumps(to_message(completion, ctx.usage))

    def stream(self, ctx: RequestContext, body: JSON) -> AnthropicStream:
        return AnthropicStream(body.get("model") or "", prompt_tokens(ctx))

    def error(self, err: GatewayError) -> tuple[int, bytes]:
        return error_body(err)


__all__ = ["AnthropicMessages", "AnthropicStream", "to_chat", "to_message"]
