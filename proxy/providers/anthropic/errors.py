"""Anthropic error bodies (`{"type": "error", "error": {"type", "message"}}`) -> UpstreamError.

The error `type` decides over the HTTP status: stream `error` events carry no status at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.core.anthropic_wire import ERROR_STATUS
from proxy.core.errors import INVALID_REQUEST, UpstreamError, upstream_error_from_status
from proxy.providers.base import parse_retry_after

STATUS = ERROR_STATUS
CONTEXT_LENGTH = ("prompt is too long", "exceed context limit", "exceeds the context window")


def parse_body(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def error_from_body(status: int | None, body: Any, headers: Mapping[str, str] | None) -> UpstreamError:
    err = body.get("error") if isinstance(body, dict) else None
    etype = err.get("type") if isinstance(err, dict) else None
    message = str(err.get("message") or "") if isinstance(err, dict) else ""
    if status is None:  # a stream `error` event
        status = STATUS.get(etype or "", 500)
    message = message or f"Anthropic returned status {status}"
    retry_after = parse_retry_after(headers) if headers else None
    if etype == "overloaded_error":
        status = 529  # sometimes sent with another status; it is always worth a retry elsewhere
    if status == 400 and any(p in message.lower() for p in CONTEXT_LENGTH):
        return UpstreamError(400, message, kind="context_length", retryable=False, type=INVALID_REQUEST,
                             code="context_length_exceeded", upstream_status=status)
    if etype == "billing_error":
        return UpstreamError(502, f"upstream account has a billing problem: {message}", kind="auth",
                             retryable=False, code="upstream_billing_error", upstream_status=status)
    return upstream_error_from_status(status, message, retry_after=retry_after)


def anthropic_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
    body = parse_body(data)
    if not isinstance(body, dict):
        body = {"error": {"message": data[:500].decode("utf-8", "replace")}}
    return error_from_body(status, body, headers)
