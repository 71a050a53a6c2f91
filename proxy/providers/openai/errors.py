"""OpenAI-shaped error bodies (`{"error": {"message", "code", "param"}}`) -> UpstreamError."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from proxy.core.errors import UpstreamError, upstream_error_from_status
from proxy.providers.base import parse_retry_after


def openai_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
    """OpenAI-shaped error bodies keep their message/code; context overflow and filters are named."""
    message, code, param = data[:500].decode("utf-8", "replace") or f"upstream status {status}", None, None
    try:
        err = orjson.loads(data).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = err.get("code") if isinstance(err.get("code"), str) else None
            param = err.get("param") if isinstance(err.get("param"), str) else None
        elif isinstance(err, str):
            message = err
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if status == 400 and (code == "context_length_exceeded" or "maximum context length" in message):
        return UpstreamError(400, message, kind="context_length", retryable=False,
                             type="invalid_request_error", code="context_length_exceeded", param=param,
                             upstream_status=status)
    if status == 400 and code == "content_filter":
        return UpstreamError(400, message, kind="content_filter", retryable=False,
                             type="invalid_request_error", code="content_filter", param=param,
                             upstream_status=status)
    mapped = upstream_error_from_status(status, message, retry_after=parse_retry_after(headers), code=code)
    mapped.param = param
    return mapped
