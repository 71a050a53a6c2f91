"""Bounds on hostile JSON (`listen.limits`): nesting depth and the size of one string, checked cheaply.

orjson parses the body in C (and refuses nesting beyond 1024 on its own); walking the parsed object again
in Python to measure it would cost as much as the rest of the request for a big body. Two C-speed
upper bounds on the raw bytes settle almost every request without a walk:

* nesting depth <= the number of `{` and `[` bytes (a bracket inside a string only overcounts), so a body
  with at most `max_json_depth` of them cannot be too deep;
* a decoded string is never longer in UTF-8 than its JSON text, so a body of at most `max_string_bytes`
  holds no string over the limit.

Only a body that fails a bound is walked (containers only, iteratively, stopping at the first violation).
The number of messages and of tools are plain `len()` checks in `validate_chat`.
"""

from __future__ import annotations

from typing import Any

from proxy.config import InputLimits
from proxy.core.errors import INVALID_REQUEST, GatewayError

DEFAULT_LIMITS = InputLimits()


def over_length(param: str, got: int, limit: int, setting: str) -> GatewayError:
    """OpenAI's wording for an array over its maximum length, naming the gateway setting that sets it."""
    return GatewayError(400, f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
                        f"but got an array with length {got} instead (listen.limits.{setting}).", INVALID_REQUEST,
                        code="array_above_max_length", param=param)


def check_shape(raw: bytes, body: Any, limits: InputLimits) -> None:
    max_depth, max_string = limits.max_json_depth, limits.max_string_bytes
    deep = raw.count(b"{") + raw.count(b"[") > max_depth
    big = len(raw) > max_string
    if deep or big:
        _walk(body, max_depth if deep else 1 << 30, max_string if big else 0)


def _walk(body: Any, max_depth: int, max_string: int) -> None:
    """Depth-first over containers; raises at the first container deeper than `max_depth` or string (value or
    object key) longer than `max_string` UTF-8 bytes (0: strings unchecked)."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(body, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            raise GatewayError(400, f"The request body nests JSON deeper than {max_depth} levels, at "
                               f"'{_param(path)}' (listen.limits.max_json_depth).", INVALID_REQUEST,
                               code="json_too_deep", param=_param(path))
        pairs = node.items() if type(node) is dict else enumerate(node)
        for k, v in pairs:
            t = type(v)
            if t is dict or t is list:
                stack.append((v, depth + 1, (*path, k)))
            elif max_string and ((t is str and _too_long(v, max_string)) or
                                 (type(k) is str and _too_long(k, max_string))):
                param = _param((*path, k))
                raise GatewayError(400, f"Invalid '{param}': string too long. Expected a string with maximum "
                                   f"length {max_string} bytes (listen.limits.max_string_bytes).", INVALID_REQUEST,
                                   code="string_above_max_length", param=param)


def _too_long(s: str, limit: int) -> bool:
    # a character is 1 to 4 UTF-8 bytes: encode only when the character count cannot decide
    n = len(s)
    return n > limit or (n * 4 > limit and len(s.encode("utf-8", "surrogatepass")) > limit)


def _param(path: tuple[str | int, ...]) -> str:
    """`messages[0].content` from ("messages", 0, "content"); long paths are cut (a hostile body's path is
    as deep as it likes)."""
    out = ""
    for part in path[:12]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part[:64]}" if out else part[:64])
    return out + ("..." if len(path) > 12 else "") or "body"
