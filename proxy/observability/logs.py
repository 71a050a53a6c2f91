"""Structured logs: one JSON line per request (console rendering when stdout is a TTY).

JSON lines go through a buffered writer flushed every 100 ms and at shutdown, instead of one
write+flush syscall per request; timestamps are rendered from a per-second cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson
import structlog

if TYPE_CHECKING:  # annotations only: the config layer sits above this one
    from proxy.config import LoggingConfig


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}  # as structlog's add_log_level maps them


_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


class _Stamp:
    """`level` and an ISO-8601 UTC `timestamp` with milliseconds, in one processor (structlog's
    add_log_level + TimeStamper cost two calls and a strftime per line; strftime here runs once a second,
    and the milliseconds' text comes from a table rather than a format spec)."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, _: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        event["level"] = _LEVEL_NAMES.get(method, method)
        now = time.time()
        sec = int(now)
        if sec != self._sec:
            self._sec, self._prefix = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        event["timestamp"] = self._prefix + _MILLIS[int((now - sec) * 1000)]
        return event


class BufferedBytesLogger:
    """structlog logger writing rendered bytes to a buffered stream; `flush()` is called periodically."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def msg(self, message: bytes) -> None:  # the renderer appends the newline
        self._stream.write(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._stream.flush()


_json_logger: BufferedBytesLogger | None = None
_json_processors: tuple[Any, ...] = ()  # what structlog runs in JSON mode (`info_emitter` runs them itself)


def _buffered(stream: Any) -> Any:
    """`stream`, buffered. With PYTHONUNBUFFERED=1 (our Dockerfile sets it, as most images do)
    sys.stdout.buffer is the raw file and every log line would be its own write() syscall; the periodic
    flush is what bounds the delay. The fd is borrowed (closefd=False): dropping this never closes stdout."""
    if isinstance(stream, io.RawIOBase) and hasattr(stream, "fileno"):
        return io.BufferedWriter(io.FileIO(stream.fileno(), "wb", closefd=False), buffer_size=1 << 16)
    return stream


class _FromStdlib(logging.Handler):
    """aiohttp logs through the standard library (`aiohttp.server`, `aiohttp.web`, ...): each record becomes one
    structured line through the gateway's processors (an exception's traceback inside it, as a field) instead
    of raw lines on stderr beside the JSON ones."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(record.levelno, record.getMessage(), exc_info=record.exc_info or None)


def _bridge_aiohttp(level: int) -> None:
    aio = logging.getLogger("aiohttp")
    for h in [h for h in aio.handlers if isinstance(h, _FromStdlib)]:
        aio.removeHandler(h)
    aio.addHandler(_FromStdlib())
    aio.setLevel(level)
    aio.propagate = False


def configure(cfg: LoggingConfig, stream: Any = None) -> None:
    global _json_logger, _json_processors
    stream = stream or sys.stdout
    use_console = cfg.format == "console" or (cfg.format == "auto" and stream.isatty())
    shared: list[Any] = [_Stamp()]
    if use_console:
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=stream.isatty())]
        factory: Any = structlog.PrintLoggerFactory(stream)
        _json_logger = None
    else:
        processors = [*shared, structlog.processors.format_exc_info,
                      structlog.processors.JSONRenderer(serializer=orjson.dumps, option=orjson.OPT_APPEND_NEWLINE)]
        _json_logger = BufferedBytesLogger(_buffered(getattr(stream, "buffer", stream)))
        logger = _json_logger
        factory = lambda *_: logger  # noqa: E731 - structlog wants a factory callable
        _json_processors = tuple(processors)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[cfg.level]),
        logger_factory=factory,
        # not cached: a module-level logger used before a later `configure` follows the new configuration
        # (level, format, stream) instead of writing to the old one. No per-request line goes through these
        # (the request line has its own emitter, `info_emitter`), so the lookup costs nothing on the hot path.
        cache_logger_on_first_use=False,
    )
    _bridge_aiohttp(_LEVELS[cfg.level])


def flush() -> None:
    if _json_logger is not None:
        _json_logger.flush()


async def flush_periodically(interval: float = 0.1) -> None:
    """Runs for the gateway's lifetime; logs reach the stream at most `interval` late."""
    try:
        while True:
            await asyncio.sleep(interval)
            flush()
    finally:
        flush()


def get_logger(name: str = "gateway") -> Any:
    return structlog.get_logger(name)


def info_emitter(name: str, event: str) -> Callable[[dict[str, Any]], None]:
    """`emit(fields)` logs `event` at info level as `get_logger(name).info(event, **fields)` does, for a line
    written on every request. In JSON mode structlog's configured processors run on `fields` itself (which
    becomes the event dict): the bound logger's `info(**fields)` packs and copies the fields three times
    on the way, which cost more than rendering the line (~5 of ~9 us). Same bytes out either way."""
    bound = structlog.get_logger(name).bind()
    logger = _json_logger
    if logger is None or not bound.is_enabled_for(logging.INFO):
        info = bound.info  # console mode, or info filtered out (a no-op then)
        return lambda fields: info(event, **fields)
    processors = _json_processors

    def emit(fields: dict[str, Any]) -> None:
        fields["event"] = event
        for processor in processors:
            fields = processor(logger, "info", fields)
        logger.msg(fields)  # the JSON renderer returns bytes: what structlog hands its logger

    return emit
