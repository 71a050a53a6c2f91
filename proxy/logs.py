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
from typing import Any, BinaryIO

import orjson
import structlog

from .config import LoggingConfig

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}  # as structlog's add_log_level maps them


class _Stamp:
    """`level` and an ISO-8601 UTC `timestamp` with milliseconds, in one processor (structlog's
    add_log_level + TimeStamper cost two calls and a strftime per line; strftime here runs once a second)."""

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
        event["timestamp"] = f"{self._prefix}.{int((now - sec) * 1000):03d}Z"
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


def _buffered(stream: Any) -> Any:
    """`stream`, buffered. With PYTHONUNBUFFERED=1 (our Dockerfile sets it, as most images do)
    sys.stdout.buffer is the raw file and every log line would be its own write() syscall; the periodic
    flush is what bounds the delay. The fd is borrowed (closefd=False): dropping this never closes stdout."""
    if isinstance(stream, io.RawIOBase) and hasattr(stream, "fileno"):
        return io.BufferedWriter(io.FileIO(stream.fileno(), "wb", closefd=False), buffer_size=1 << 16)
    return stream


def configure(cfg: LoggingConfig, stream: Any = None) -> None:
    global _json_logger
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
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[cfg.level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


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
