"""Azure OpenAI errors: content filters, numeric codes and missing deployments, else OpenAI's mapping."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from proxy.core.errors import INVALID_REQUEST, NOT_FOUND, UpstreamError, upstream_error_from_status
from proxy.providers.base import parse_retry_after
from proxy.providers.openai.errors import openai_error


def azure_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
    try:
        err = orjson.loads(data).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        err = None
    if not isinstance(err, dict):
        return openai_error(status, headers, data)
    message = str(err.get("message") or f"upstream status {status}")
    code = err.get("code") if isinstance(err.get("code"), str) else None
    inner = err.get("innererror") if isinstance(err.get("innererror"), dict) else {}
    if status == 400 and (code == "content_filter" or inner.get("code") == "ResponsibleAIPolicyViolation"):
        param = err.get("param") if isinstance(err.get("param"), str) else None
        return UpstreamError(400, message, kind="content_filter", retryable=False, type=INVALID_REQUEST,
                             code="content_filter", param=param, upstream_status=status)
    if code == "DeploymentNotFound":
        return UpstreamError(404, message, kind="not_found", retryable=False, type=NOT_FOUND,
                             code="model_not_found", upstream_status=status)
    if code is not None and code.isdigit():  # "401", "404", "429": not OpenAI codes
        return upstream_error_from_status(status, message, retry_after=parse_retry_after(headers))
    return openai_error(status, headers, data)
