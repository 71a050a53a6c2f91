"""AWS event-stream decoding (`application/vnd.amazon.eventstream`), used by Bedrock ConverseStream.

Binary frames (prelude with lengths + CRC, typed headers, payload, message CRC) are parsed by
botocore's `EventStreamBuffer`. Events come out as (`:event-type`, payload bytes); `exception`
and `error` messages raise the mapped UpstreamError (throttlingException -> 429, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from proxy.core.errors import UpstreamError
from proxy.providers.bedrock.auth import INSTALL_HINT, provider_unavailable
from proxy.providers.bedrock.errors import aws_error
from proxy.providers.transport import bad_response, stream_cut


def _exception(headers: dict[str, object], payload: bytes) -> UpstreamError:
    if headers.get(":message-type") == "error":  # protocol-level error: name and text in headers
        return aws_error(str(headers.get(":error-code") or "InternalServerException"),
                         str(headers.get(":error-message") or "upstream stream error"))
    try:
        message = str(orjson.loads(payload).get("message") or "")
    except (orjson.JSONDecodeError, AttributeError):
        message = payload[:500].decode("utf-8", "replace")
    name = str(headers.get(":exception-type") or "InternalServerException")
    err = aws_error(name, message or name)
    if err.kind == "server":
        err.kind = "stream_cut"  # a failure after the stream started: callers treat it like a cut
    return err


async def iter_eventstream(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    try:
        from botocore.eventstream import EventStreamBuffer, ParserError
    except ImportError:
        raise provider_unavailable(f"decoding Bedrock streams needs botocore: {INSTALL_HINT}") from None
    buf = EventStreamBuffer()
    pending = 0  # bytes received but not yet consumed by a complete message
    async for raw in chunks:
        buf.add_data(raw)
        pending += len(raw)
        try:
            for msg in buf:
                pending -= msg.prelude.total_length
                kind = msg.headers.get(":message-type")
                if kind in ("exception", "error"):
                    raise _exception(msg.headers, msg.payload)
                if kind == "event":
                    yield msg.headers.get(":event-type"), msg.payload
        except ParserError as err:
            raise bad_response(f"invalid event-stream frame: {type(err).__name__}") from None
    if pending:
        raise stream_cut("event stream ended inside a frame")
