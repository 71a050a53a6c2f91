"""Mistral error bodies (`message`, or FastAPI's `detail` list) -> UpstreamError."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from proxy.core.errors import INVALID_REQUEST, UpstreamError, upstream_error_from_status
from proxy.providers.base import parse_retry_after

# "Prompt contains 40000 tokens ... too large for model with 32768 maximum context length"
_CONTEXT = re.compile(r"too large for model|maximum context length|context length")


def _message(payload: Any) -> str | None:
    """Mistral's error text lives in `message` (a string, or FastAPI's `{detail: [...]}`) or `detail`."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        for key in ("message", "detail"):
            if key in payload:
                return _message(payload[key])
        return None
    if isinstance(payload, list):
        parts = []
        for d in payload:
            if isinstance(d, dict):
                loc = ".".join(str(p) for p in d.get("loc") or () if p != "body")
                parts.append(f"{loc}: {d.get('msg')}" if loc else str(d.get("msg")))
        return "; ".join(parts) or None
    return None


def mistral_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    message = _message(parsed) or data[:500].decode("utf-8", "replace") or f"upstream status {status}"
    if status in (400, 422) and _CONTEXT.search(message):
        return UpstreamError(400, message, kind="context_length", retryable=False, type=INVALID_REQUEST,
                             code="context_length_exceeded", upstream_status=status)
    if status == 422:  # FastAPI validation: to an OpenAI client this is a plain 400
        return UpstreamError(400, message, kind="bad_request", retryable=False, type=INVALID_REQUEST,
                             code="invalid_request", upstream_status=status)
    return upstream_error_from_status(status, message, retry_after=parse_retry_after(headers))
