"""Serving the app: aiohttp's runner, with HTTP protocol errors answered in OpenAI's format.

aiohttp's HTTP parser rejects some requests before any handler or middleware runs (a header line over
`max_field_size`, a malformed request line, bad chunked encoding); its `RequestHandler.handle_error` then
answers `400` in plain text and logs a traceback through the `aiohttp.server` logger. `GatewayRunner`
serves with a request handler whose `handle_error` answers like every other gateway error (431
`request_header_fields_too_large` for an oversized header or request line, 400 `invalid_http_request`
otherwise) and logs one structured line without a traceback. Messages never echo the rejected bytes:
a too-long header's first 100 bytes may be someone's key.

Nothing to fingerprint: aiohttp adds `Server: Python/3.x aiohttp/3.x` to every response it writes (JSON,
streams, errors, the protocol errors above); the runner's request factory gives each connection's writer
a hook that drops it just before the headers are serialised. The longest header line (and request line)
the parser accepts is `listen.limits.max_header_bytes` (aiohttp's `max_field_size` / `max_line_size`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

from proxy.core.errors import INVALID_REQUEST, SERVER, TIMEOUT, GatewayError
from proxy.gateway import GATEWAY
from proxy.observability.logs import get_logger

log = get_logger("gateway.http")

# what each parser failure says to the client, by exception class (most specific first)
_WHAT: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (BadHttpMethod, "The request line has an invalid HTTP method (is this TLS sent to a plain HTTP port?)."),
    (BadStatusLine, "The request line is malformed."),
    (InvalidURLError, "The request URL is malformed."),
    (InvalidHeader, "A request header is malformed."),
    (TransferEncodingError, "The request body's transfer encoding (chunked) is malformed."),
)
_MALFORMED = "The request is not valid HTTP/1.1 (request line, headers or chunked body)."


def protocol_error(status: int, exc: BaseException | None) -> GatewayError:
    """The client's answer to a request aiohttp could not parse (or, 500/504, could not serve)."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "the allowed number of"
        return GatewayError(431, f"A request header field or the request line is longer than {limit} bytes "
                            "(listen.limits.max_header_bytes).", INVALID_REQUEST,
                            code="request_header_fields_too_large")
    if isinstance(exc, HttpProcessingError):
        what = next((text for cls, text in _WHAT if isinstance(exc, cls)), _MALFORMED)
        return GatewayError(400, what, INVALID_REQUEST, code="invalid_http_request")
    if status == 504:  # aiohttp's answer when a handler raised a TimeoutError
        return GatewayError(504, "The gateway timed out handling the request.", TIMEOUT, code="timeout")
    return GatewayError(500, "The gateway hit an internal error; it has been logged.", SERVER, code="internal_error")


class _ProtocolErrors(RequestHandler):
    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        err = protocol_error(status, exc)
        fields: dict[str, Any] = {"status": err.status, "code": err.code, "client_ip": request.remote or "",
                                  "error": type(exc).__name__ if exc is not None else None}
        if err.status >= 500:  # a bug that escaped the middleware: keep its traceback (in the JSON line)
            log.error("http_internal_error", exc_info=exc, **fields)
        elif self._request_count == 1 and isinstance(exc, BadHttpMethod):
            # not HTTP at all (TLS, scanners) on a fresh connection: noise, as aiohttp treats it
            log.debug("http_protocol_error", **fields)
        else:
            log.warning("http_protocol_error", **fields)
        if request.writer.output_size > 0:  # as aiohttp: the response started, the connection is broken
            raise ConnectionError("Response is sent already, cannot send another response with the error")
        resp = err.response()
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProtocolErrors(self, loop=self._loop, **self._kwargs)


async def _drop_server_header(headers: CIMultiDict[str]) -> None:
    headers.popall("Server", None)


def _anonymous(factory: Any) -> Any:
    """The request factory, giving each request's writer the hook that drops `Server` (aiohttp sets it with
    setdefault after every response-prepare signal, so a signal cannot remove it)."""

    def make_request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
        writer._on_headers_sent = _drop_server_header
        return factory(message, payload, protocol, writer, task)  # type: ignore[no-any-return]

    return make_request


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer protocol errors in OpenAI's format, send no `Server` header
    and accept header lines up to the gateway's `listen.limits.max_header_bytes`."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        gw = app.get(GATEWAY)
        if gw is not None:
            limit = gw.cfg.listen.limits.max_header_bytes
            kwargs.setdefault("max_field_size", limit)
            kwargs.setdefault("max_line_size", limit)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # the Server aiohttp built for the app (handler args, request factory), with our protocol factory
        server.__class__ = _Server
        server.request_factory = _anonymous(server.request_factory)
        return server


async def _serve(app: web.Application, host: str, port: int, shutdown_timeout: float, reuse_port: bool,
                 backlog: int) -> None:
    runner = GatewayRunner(app, handle_signals=True, access_log=None, handler_cancellation=True,
                           shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=backlog, reuse_port=reuse_port).start()
        await asyncio.Event().wait()  # until SIGINT/SIGTERM raise GracefulExit out of the loop
    finally:
        await runner.cleanup()


def run(app: web.Application, host: str, port: int, *, shutdown_timeout: float, reuse_port: bool = False,
        backlog: int = 4096) -> None:
    """What `web.run_app` does, with GatewayRunner (run_app builds its own AppRunner): serve until SIGINT or
    SIGTERM, then clean up gracefully (in-flight requests get `shutdown_timeout`), then cancel what is left."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, shutdown_timeout, reuse_port, backlog))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in rest:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

