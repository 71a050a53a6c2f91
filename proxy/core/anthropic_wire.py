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
