"""OpenAI-format errors: `{"error": {"message", "type", "param", "code"}}` with the right status."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

# error `type` values clients see, as OpenAI uses them
INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
PERMISSION = "permission_error"
NOT_FOUND = "not_found_error"
RATE_LIMIT = "rate_limit_error"
INSUFFICIENT_QUOTA = "insufficient_quota"
SERVER = "server_error"
UPSTREAM = "upstream_error"
TIMEOUT = "timeout_error"
UNAVAILABLE = "service_unavailable"


class GatewayError(Exception):
    """An error that reaches the client as an OpenAI-format JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        err.update(self.extra)
        return {"error": err}

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.body())

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        h = {**self.headers, **(headers or {})}
        return web.Response(status=self.status, body=self.to_bytes(), content_type="application/json", headers=h)

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.code or self.type}: {self.message})"


class UpstreamError(GatewayError):
    """An upstream failure, already mapped to what the client should see.

    `retryable` tells the resilience stage whether another attempt may succeed; `kind` is a short
    machine name (connect, timeout, rate_limit, server, overloaded, context_length, content_filter,
    auth, bad_request, stream_cut, bad_response) used in metrics and fallback decisions.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str,
        retryable: bool,
        type: str = UPSTREAM,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        upstream_status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, type=type, code=code, param=param, headers=headers)
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after
        self.upstream_status = upstream_status
        self.delivered = False  # the client already got it as the upstream's own stream event (a native stream)
        if retry_after is not None and "Retry-After" not in self.headers:
            self.headers["Retry-After"] = str(max(1, round(retry_after)))


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, INVALID_REQUEST, code=code, param=param)


def model_not_found(alias: str) -> GatewayError:
    """404 for an alias this gateway does not serve, or not to this key (the same answer: no probing)."""
    return GatewayError(404, f"The model {alias!r} does not exist or you do not have access to it.", NOT_FOUND,
                        code="model_not_found", param="model")


def upstream_error_from_status(
    status: int, message: str, *, retry_after: float | None = None, code: str | None = None
) -> UpstreamError:
    """Map an upstream HTTP status to what the client sees and whether a retry may help."""
    if status == 429:
        return UpstreamError(429, message, kind="rate_limit", retryable=True, type=RATE_LIMIT,
                             code=code or "rate_limit_exceeded", retry_after=retry_after, upstream_status=status)
    if status in (401, 403):
        # the gateway's upstream credentials are wrong: not the client's fault
        return UpstreamError(502, f"upstream rejected the gateway's credentials: {message}", kind="auth",
                             retryable=False, code=code or "upstream_auth_error", upstream_status=status)
    if status == 404:
        return UpstreamError(404, message, kind="not_found", retryable=False, type=NOT_FOUND,
                             code=code or "model_not_found", upstream_status=status)
    if status == 408:
        return UpstreamError(504, message, kind="timeout", retryable=True, type=TIMEOUT,
                             code="upstream_timeout", upstream_status=status)
    if status == 529 or status == 503:
        return UpstreamError(503, message, kind="overloaded", retryable=True, type=UNAVAILABLE,
                             code=code or "upstream_overloaded", retry_after=retry_after, upstream_status=status)
    if 400 <= status < 500:
        return UpstreamError(status, message, kind="bad_request", retryable=False, type=INVALID_REQUEST,
                             code=code, upstream_status=status)
    return UpstreamError(502, message, kind="server", retryable=True, type=UPSTREAM,
                         code=code or "upstream_error", upstream_status=status)
