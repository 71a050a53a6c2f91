"""GatewayErrors (OpenAI's shape) -> Anthropic's `{"type": "error", "error": {"type", "message"}}` with the status
Anthropic uses for that type, so the anthropic SDK raises its usual exceptions (BadRequestError, AuthenticationError,
PermissionDeniedError, NotFoundError, RateLimitError, OverloadedError (529), InternalServerError...)."""

from __future__ import annotations

import orjson

from proxy.core.anthropic_wire import ERROR_STATUS
from proxy.core.errors import GatewayError

# the gateway's status -> Anthropic's error type; the status then is the one Anthropic sends that type with
# (503 "no provider available / overloaded" -> 529 overloaded_error), except for types Anthropic has no status
# of its own for (a 502 upstream failure stays 502, api_error)
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(err: GatewayError) -> str:
    etype = _TYPE_BY_STATUS.get(err.status)
    if etype is None:
        etype = "api_error" if err.status >= 500 else "invalid_request_error"
    return etype


def error_body(err: GatewayError) -> tuple[int, bytes]:
    etype = error_type(err)
    status = ERROR_STATUS[etype] if etype == "overloaded_error" else err.status
    return status, orjson.dumps({"type": "error", "error": {"type": etype, "message": err.message}})
