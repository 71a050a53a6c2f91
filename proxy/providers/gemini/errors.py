"""Google error bodies (`{"error": {"code", "message", "status", "details"}}`) -> UpstreamError."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.core.errors import INVALID_REQUEST, UpstreamError, upstream_error_from_status
from proxy.providers.base import parse_retry_after

# google.rpc.Code names -> the HTTP status Google maps them to
STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500, "UNKNOWN": 500, "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}
CONTEXT_LENGTH = ("exceeds the maximum number of tokens",)


def retry_delay(details: list[Any]) -> float | None:
    """`google.rpc.RetryInfo.retryDelay` ("37s", "1.5s") from the error details."""
    for d in details:
        delay = d.get("retryDelay") if isinstance(d, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def error_from_body(status: int | None, err: Any, headers: Mapping[str, str] | None) -> UpstreamError:
    err = err if isinstance(err, dict) else {}
    name = str(err.get("status") or "")
    code = err.get("code") if isinstance(err.get("code"), int) else None
    status = status or code or STATUS.get(name, 500)
    message = str(err.get("message") or f"Gemini returned status {status}")
    details = err.get("details") if isinstance(err.get("details"), list) else []
    reasons = {d.get("reason") for d in details if isinstance(d, dict)}
    retry_after = (parse_retry_after(headers) if headers else None) or retry_delay(details)
    if "API_KEY_INVALID" in reasons or name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        # Google answers a bad key with 400 INVALID_ARGUMENT: still the gateway's credentials, not the client
        return upstream_error_from_status(403 if name == "PERMISSION_DENIED" else 401, message)
    if name == "RESOURCE_EXHAUSTED":
        status = 429
    elif name == "UNAVAILABLE":
        status = 503
    if status == 400 and any(p in message for p in CONTEXT_LENGTH):
        return UpstreamError(400, message, kind="context_length", retryable=False, type=INVALID_REQUEST,
                             code="context_length_exceeded", upstream_status=status)
    return upstream_error_from_status(status, message, retry_after=retry_after)


def gemini_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, list) and body:  # streamGenerateContent without alt=sse answers a JSON array
        body = body[0]
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {"message": data[:500].decode("utf-8", "replace")}
    return error_from_body(status, err, headers)


def blocked_prompt(reason: str, message: str | None) -> UpstreamError:
    text = f"the prompt was blocked by Gemini's safety filters (blockReason {reason})"
    return UpstreamError(400, f"{text}: {message}" if message else text, kind="content_filter",
                         retryable=False, type=INVALID_REQUEST, code="content_filter")
