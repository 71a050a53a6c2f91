"""Structured logs: one JSON line per request (console rendering when stdout is a TTY)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from .config import LoggingConfig

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(cfg: LoggingConfig, stream: Any = None) -> None:
    stream = stream or sys.stdout
    use_console = cfg.format == "console" or (cfg.format == "auto" and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_console:
        processors = [*shared, structlog.dev.ConsoleRenderer(colors=stream.isatty())]
        factory: Any = structlog.PrintLoggerFactory(stream)
    else:
        # orjson renders straight to bytes; BytesLogger writes them without a str round-trip
        processors = [*shared, structlog.processors.format_exc_info,
                      structlog.processors.JSONRenderer(serializer=orjson.dumps)]
        factory = structlog.BytesLoggerFactory(getattr(stream, "buffer", stream))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[cfg.level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "gateway") -> Any:
    return structlog.get_logger(name)
