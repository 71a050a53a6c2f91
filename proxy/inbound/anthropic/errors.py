"""GatewayErrors (OpenAI's shape) -> Anthropic's `{"type": "error", "error": {"type", "message"}}` with the status
Anthropic uses for that type, so the anthropic SDK raises its usual exceptions (BadRequestError, AuthenticationError,
PermissionDeniedError, NotFoundError, RateLimitError, OverloadedError (529), InternalServerError...)."""

from __future__ import annotations

import orjson

from proxy.core.anthropic_wire import ERROR_STATUS, error_type
from proxy.core.errors import GatewayError


def error_body(err: GatewayError) -> tuple[int, bytes]:
    etype = error_type(err.status)
    status = ERROR_STATUS[etype] if etype == "overloaded_error" else err.status
    return status, orjson.dumps({"type": "error", "error": {"type": etype, "message": err.message}})
