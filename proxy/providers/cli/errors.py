"""The `cli` provider's errors: a missing binary (503 `cli_not_found`), a non-zero exit (502 with the tail
of stderr, secret-looking values masked)."""

from __future__ import annotations

import os
import re

from proxy.core.errors import UNAVAILABLE, UpstreamError

STDERR_TAIL = 400
_SECRET = re.compile(r"(?i)((?:api[_-]?key|token|secret|password|authorization)[\"']?\s*[:=]\s*[\"']?)"
                     r"([^\s\"',]+)|\b(sk-[A-Za-z0-9_-]{8,}|AKIA[0-9A-Z]{16}|Bearer\s+[A-Za-z0-9._~+/=-]{8,})")


def redact(text: str) -> str:
    def mask(m: re.Match[str]) -> str:
        return f"{m.group(1)}***" if m.group(1) else "***"
    return _SECRET.sub(mask, text)


def not_found(program: str) -> UpstreamError:
    return UpstreamError(503, f"CLI model command not found: {os.path.basename(program)!r}", kind="config",
                         retryable=False, type=UNAVAILABLE, code="cli_not_found")


def exit_error(program: str, code: int, stderr: bytes) -> UpstreamError:
    tail = redact(stderr[-STDERR_TAIL:].decode("utf-8", "replace").strip())
    msg = f"CLI model {os.path.basename(program)!r} exited with status {code}" + (f": {tail}" if tail else "")
    return UpstreamError(502, msg, kind="server", retryable=True, code="cli_error")
