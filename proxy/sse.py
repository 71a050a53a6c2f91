"""Server-sent events: parsing upstream streams and framing chunks for clients.

Parsing works on raw byte chunks (no per-line awaits) so pass-through streams cost little; framing
writes `data: <payload>\\n\\n` bytes directly so an upstream chunk is never decoded or re-encoded.
The client-facing response is aiohttp-sse's `EventSourceResponse` (headers, keep-alive pings).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

DONE = b"data: [DONE]\n\n"


class SSEParser:
    """Incremental SSE parser: feed bytes, get (event, data) pairs for each complete event."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        buf = self._buf + chunk if self._buf else chunk
        lines = buf.split(b"\n")
        self._buf = lines.pop()  # incomplete tail (b"" when the chunk ended with a newline)
        out: list[tuple[str | None, bytes]] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if self._data:
                    out.append((self._event, b"\n".join(self._data)))
                self._event, self._data = None, []
            elif line.startswith(b"data:"):
                v = line[5:]
                self._data.append(v[1:] if v.startswith(b" ") else v)
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
            # `id:`, `retry:` and `:` comments carry nothing a translator needs
        return out

    def close(self) -> list[tuple[str | None, bytes]]:
        """Flush an event the upstream did not terminate with a blank line."""
        out = self.feed(b"\n\n") if self._buf or self._data else []
        return out


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def error_event(message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
    """The event that ends a stream which broke mid-way (the SDKs raise it as an APIError)."""
    return frame(orjson.dumps({"error": {"message": message, "type": type, "param": None, "code": code}}))


async def open_stream(request: web.Request, headers: Mapping[str, str]) -> EventSourceResponse:
    # send_timeout=None skips three setsockopt/getsockopt calls per stream (TCP_USER_TIMEOUT); streams are
    # bounded anyway by the upstream idle/total timeouts, and pings surface dead clients.
    resp = EventSourceResponse(headers=headers, sep="\n", ping_interval=15, allow_all_methods=True,
                               send_timeout=None)
    await resp.prepare(request)
    return resp


async def end_stream(resp: EventSourceResponse) -> None:
    """Stop the keep-alive ping task and finish the response. Without this the ping task (and with it
    the response, request and connection objects) lives on up to `ping_interval` after every stream:
    2,000 finished streams held ~4,000 tasks and tens of MiB."""
    resp.stop_streaming()
    try:
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass
