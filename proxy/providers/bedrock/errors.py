"""Bedrock (AWS rest-json) errors -> the OpenAI-format errors clients see.

HTTP errors name their type in the `x-amzn-ErrorType` header (`ThrottlingException:http://...`)
or the body's `__type`/`code`; the text is the body's `message`. Event-stream exceptions carry the
same names in lower camel case (`throttlingException`), so names are compared case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from proxy.core.errors import INVALID_REQUEST, NOT_FOUND, RATE_LIMIT, TIMEOUT, UNAVAILABLE, UPSTREAM, UpstreamError
from proxy.providers.base import parse_retry_after

AUTH_ERRORS = {"accessdeniedexception", "unrecognizedclientexception", "invalidsignatureexception",
               "expiredtokenexception", "incompletesignatureexception", "missingauthenticationtokenexception",
               "signaturedoesnotmatchexception", "invalidclienttokenidexception"}
# "Input is too long for requested model", "prompt is too long: 210000 tokens > 200000 maximum",
# "too many input tokens", "exceeds the model's max tokens / maximum context length"
_CONTEXT = re.compile(r"too long|too many (input )?tokens|max(imum)?[ _]tokens|context (length|window)",
                      re.IGNORECASE)


def error_type(headers: Mapping[str, str], body: object) -> str:
    raw = next((v for k, v in headers.items() if k.lower() == "x-amzn-errortype"), "")
    if not raw and isinstance(body, dict):
        raw = str(body.get("__type") or body.get("code") or "")
    # "ThrottlingException:http://internal.amazon.com/...", "com.amazon.coral.service#ThrottlingException"
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


def aws_error(name: str, message: str, status: int | None = None,
              retry_after: float | None = None) -> UpstreamError:
    """One AWS exception name (+ HTTP status when known) -> the mapped UpstreamError."""
    n = name.lower()
    if n in ("throttlingexception", "servicequotaexceededexception", "toomanyrequestsexception") or (
            status == 429 and n != "modelnotreadyexception"):
        return UpstreamError(429, message, kind="rate_limit", retryable=True, type=RATE_LIMIT,
                             code="rate_limit_exceeded", retry_after=retry_after, upstream_status=status)
    if n in AUTH_ERRORS or status in (401, 403):
        return UpstreamError(502, f"upstream rejected the gateway's credentials: {message}", kind="auth",
                             retryable=False, code="upstream_auth_error", upstream_status=status)
    if n in ("serviceunavailableexception", "modelnotreadyexception") or status == 503:
        return UpstreamError(503, message, kind="overloaded", retryable=True, type=UNAVAILABLE,
                             code="upstream_overloaded", retry_after=retry_after, upstream_status=status)
    if n == "resourcenotfoundexception" or status == 404:
        return UpstreamError(404, message, kind="not_found", retryable=False, type=NOT_FOUND,
                             code="model_not_found", upstream_status=status)
    if n == "modeltimeoutexception" or status == 408:
        return UpstreamError(504, message, kind="timeout", retryable=True, type=TIMEOUT,
                             code="upstream_timeout", upstream_status=status)
    if n == "validationexception" or (status is not None and 400 <= status < 500 and
                                      n not in ("modelerrorexception", "modelstreamerrorexception")):
        if _CONTEXT.search(message):
            return UpstreamError(400, message, kind="context_length", retryable=False, type=INVALID_REQUEST,
                                 code="context_length_exceeded", upstream_status=status)
        return UpstreamError(400, message, kind="bad_request", retryable=False, type=INVALID_REQUEST,
                             code="invalid_request", upstream_status=status)
    # InternalServerException, ModelErrorException (424), ModelStreamErrorException, anything else
    return UpstreamError(502, message, kind="server", retryable=True, type=UPSTREAM, code="upstream_error",
                         upstream_status=status)


def http_error(status: int, headers: Mapping[str, str], data: bytes) -> UpstreamError:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    message = ""
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("Message") or "")
    message = message or data[:500].decode("utf-8", "replace") or f"upstream status {status}"
    return aws_error(error_type(headers, body), message, status, retry_after=parse_retry_after(headers))
