"""Server-sent events: parsing upstream streams and framing chunks for clients.

Parsing works on raw byte chunks (no per-line awaits) so pass-through streams cost little; framing
writes `data: <payload>\\n\\n` bytes directly so an upstream chunk is never decoded or re-encoded.
The client-facing response is aiohttp-sse's `EventSourceResponse` (headers, keep-alive pings).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

DONE = b"data: [DONE]\n\n"
PING_INTERVAL = 15.0  # seconds between keep-alive comments on a quiet stream


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


_EVENT_NAMES: dict[bytes, str] = {}  # `event: <name>` line (no LF in it) -> name


class BlockSSEParser:
    """`SSEParser`'s events, cut a whole event at a time instead of line by line (what every upstream SSE
    stream is read with: its events come one per `data:` line, so this is the common case).

    The buffer is split at blank lines (`\\n\\n`, or `\\r\\n\\r\\n` once a CR was seen: Gemini's CRLF),
    which end an event for SSEParser too. An event of the usual shapes, `data: <payload>` or `event: <name>` then
    `data: <payload>`, with no other LF in it, is taken apart at once (SSEParser splits lines at LF and drops the
    CR before it, so a CR anywhere else reads the same both ways); any other one goes through an SSEParser of its
    own (from an event boundary, so with the same result). If what is left after the last blank line could hold
    an event end SSEParser would already have seen (mixed line ends), an SSEParser takes the rest of the stream.
    """

    __slots__ = ("_buf", "_lines")

    def __init__(self) -> None:
        self._buf = b""  # the unfinished event after the last blank line
        self._lines: SSEParser | None = None

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        if self._lines is not None:
            return self._lines.feed(chunk)
        buf = self._buf + chunk if self._buf else chunk
        if 13 in buf:  # `13 in` is a memchr; `b"\r" in` costs several times more
            crlf, sep, data_line = True, b"\r\n\r\n", b"\r\ndata: "
        else:
            crlf, sep, data_line = False, b"\n\n", b"\ndata: "
        blocks = buf.split(sep)
        tail = blocks.pop()
        out: list[tuple[str | None, bytes]] = []
        for block in blocks:
            if not block:
                continue  # blank lines in a row
            if block[0] == 101:  # "e": `event: <name>` and `data: <payload>`?
                line, found, data = block.partition(data_line)
                if found and 10 not in data:
                    name = _EVENT_NAMES.get(line)
                    if name is None and line.startswith(b"event:") and 10 not in line:
                        name = line[6:].strip().decode("utf-8", "replace")
                        if len(_EVENT_NAMES) < 256:
                            _EVENT_NAMES[line] = name
                    if name is not None:
                        out.append((name, data))
                        continue
            elif 10 not in block and block.startswith(b"data: "):
                out.append((None, block[6:]))
                continue
            out += SSEParser().feed(block + sep)
        if crlf and tail and (b"\n\n" in tail or b"\n\r\n" in tail):  # an LF-only event end in it
            lines = self._lines = SSEParser()
            out += lines.feed(tail)
            tail = b""
        self._buf = tail
        return out

    def idle(self) -> bool:
        """Nothing buffered: the next byte fed starts an event."""
        return not self._buf and self._lines is None

    def close(self) -> list[tuple[str | None, bytes]]:
        """Flush an event the upstream did not terminate with a blank line."""
        if self._lines is not None:
            return self._lines.close()
        return self.feed(b"\n\n") if self._buf else []


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def frames(payloads: list[bytes]) -> bytes:
    """Several chunks as one write's worth of events (one join, no per-chunk concatenation)."""
    if len(payloads) == 1:
        return b"data: " + payloads[0] + b"\n\n"
    return b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n" if payloads else b""


def payloads(blocks: Iterable[bytes]) -> list[bytes]:
    """The chunk payloads in framed blocks (what the cache stores of a streamed answer)."""
    parser = BlockSSEParser()
    return [data for block in blocks for _event, data in parser.feed(block)]


async def relay(blocks: AsyncIterator[bytes], write: Callable[[bytes], Awaitable[Any]]) -> None:
    """Write a stream's framed blocks as they come: one write per upstream read."""
    async for block in blocks:
        await write(block)


def error_event(message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
    """The event that ends a stream which broke mid-way (the SDKs raise it as an APIError)."""
    return frame(orjson.dumps({"error": {"message": message, "type": type, "param": None, "code": code}}))


class EventStream(EventSourceResponse):
    """aiohttp-sse's response with its keep-alive ping task started only once a stream outlives one ping
    interval: most chat streams end sooner, and a task per stream (created, run once, cancelled) was a
    measurable share of a short stream's CPU. A timer handle costs far less; pings go out as before."""

    _ping_timer: asyncio.TimerHandle | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        # EventSourceResponse.prepare without its task (send_timeout is None: no TCP_USER_TIMEOUT to set)
        writer = await web.StreamResponse.prepare(self, request)
        self.enable_chunked_encoding()
        self._ping_timer = asyncio.get_running_loop().call_later(self._ping_interval, self._start_pings)
        return writer

    def _start_pings(self) -> None:
        self._ping_timer = None
        self._ping_task = asyncio.ensure_future(self._ping_now_then_every_interval())

    async def _ping_now_then_every_interval(self) -> None:
        try:
            await self.write(b": ping" + self._sep.encode() * 2)
        except (ConnectionResetError, RuntimeError):
            return
        await self._ping()  # aiohttp-sse's loop: sleep one interval, ping, ...

    def stop_streaming(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._ping_task is not None:
            self._ping_task.cancel()


async def open_stream(request: web.Request, headers: Mapping[str, str]) -> EventStream:
    # send_timeout=None skips three setsockopt/getsockopt calls per stream (TCP_USER_TIMEOUT); streams are
    # bounded anyway by the upstream idle/total timeouts, and pings surface dead clients.
    resp = EventStream(headers=headers, sep="\n", ping_interval=PING_INTERVAL, allow_all_methods=True,
                       send_timeout=None)
    await resp.prepare(request)
    return resp


async def end_stream(resp: EventStream, tail: bytes = b"", quiet: bool = True) -> None:
    """Stop the keep-alive pings and finish the response, `tail` (e.g. `data: [DONE]`) going out in the same
    write as the end of the chunked body. Without the stop, a ping task (and with it the response, request
    and connection objects) would live on up to `ping_interval` after the stream. `quiet`: a client that
    went away is no error (when ending on an error event; the normal end lets the caller see it)."""
    resp.stop_streaming()
    try:
        await resp.write_eof(tail)
    except (ConnectionResetError, RuntimeError):
        if not quiet:
            raise
