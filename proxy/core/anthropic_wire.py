"""Anthropic Messages wire constants shared by both directions: the provider adapter that speaks to Anthropic
(proxy/providers/anthropic/) and the inbound `/v1/messages` API that speaks it to clients (proxy/inbound/anthropic/)."""

from __future__ import annotations

# Message.stop_reason -> chat completions' finish_reason
STOP_REASON_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# and back: chat completions knows fewer reasons, so a stop sequence reads as `end_turn`
FINISH_TO_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# anthropic.types.shared.ErrorType -> the status Anthropic sends it with
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

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


def error_type(status: int) -> str:
    """The Anthropic error type for a gateway status."""
    etype = _TYPE_BY_STATUS.get(status)
    if etype is None:
        etype = "api_error" if status >= 500 else "invalid_request_error"
    return etype
