"""Reading an OpenAI request for an upstream that speaks something else: pieces every such translator needs.

Data URLs (`data:<type>;base64,<data>`, how OpenAI clients inline images and files), tool-call arguments
(a JSON string the other wire formats want as an object) and the 400 for what a provider cannot take.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.errors import INVALID_REQUEST, UpstreamError


def unsupported(message: str, param: str | None = None, code: str = "unsupported_for_provider") -> UpstreamError:
    """A request this upstream cannot take as sent: the client's to change (another provider type might)."""
    return UpstreamError(400, message, kind="bad_request", retryable=False, type=INVALID_REQUEST, param=param,
                         code=code)


def data_url(url: str) -> tuple[str, str] | None:
    """`data:<media type>;base64,<data>` -> (media type as written, base64 data); None for anything else."""
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    return header[5:-7], data


def parse_data_url(url: str, where: str) -> tuple[str, str]:
    """A data URL -> (lower-case media type, base64 data); a 400 naming `where` when it is not base64."""
    parsed = data_url(url)
    if parsed is None:
        raise unsupported(f"{where}: data URLs must be base64 encoded (data:<type>;base64,...)", where)
    return parsed[0].lower(), parsed[1]


def tool_arguments(args: Any) -> Any:
    """A tool call's `function.arguments` (a JSON string, or already a value) -> the value, {} when empty.
    Raises ValueError (orjson.JSONDecodeError) when the string is not JSON; the caller says what it needs."""
    if not args:
        return {}
    return orjson.loads(args) if isinstance(args, str) else args
