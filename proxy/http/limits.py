"""Bounds on hostile JSON (`listen.limits`): nesting depth and the size of one string, checked cheaply.

orjson parses the body in C (and refuses nesting beyond 1024 on its own); walking the parsed object again
in Python costs about 0.2 us per container (dict or list), whatever the bytes, so:

* a small body (up to 16 KiB) with at most `max_json_depth` `{` and `[` bytes cannot be too deep (a bracket
  inside a string only overcounts): counting them costs about a microsecond, and no walk is needed; the
  count is not used for bigger bodies, where it would cost more than the walk (300 us per MiB);
* a decoded string is never longer in UTF-8 than its JSON text, so a body of at most `max_string_bytes`
  holds no string over the limit and string lengths are not looked at.

Otherwise the containers are walked (recursively, at most `max_json_depth` deep, strings skipped unless
the body is bigger than `max_string_bytes`); only a refused body is walked a second time, to name the place.
The number of messages and of tools are plain `len()` checks (`check_lengths`, from `validate_chat` and the
inbound APIs). Here too: reading the raw body once (`read_body`: a signed request's signature covers those
bytes) and parsing it within the limits (`parse_json`).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from proxy.config.listen import InputLimits
from proxy.core.errors import INVALID_REQUEST, GatewayError, bad_request

DEFAULT_LIMITS = InputLimits()


def over_length(param: str, got: int, limit: int, setting: str) -> GatewayError:
    """OpenAI's wording for an array over its maximum length, naming the gateway setting that sets it."""
    return GatewayError(400, f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
                        f"but got an array with length {got} instead (listen.limits.{setting}).", INVALID_REQUEST,
                        code="array_above_max_length", param=param)


def check_lengths(body: dict[str, Any], limits: InputLimits, messages_field: str = "messages") -> None:
    """The conversation (`messages`; the Responses API's `input` items) and `tools` within listen.limits (any other
    shape is the validators' to judge)."""
    if isinstance(messages := body.get(messages_field), list) and len(messages) > limits.max_messages:
        raise over_length(messages_field, len(messages), limits.max_messages, "max_messages")
    if isinstance(tools := body.get("tools"), list) and len(tools) > limits.max_tools:
        raise over_length("tools", len(tools), limits.max_tools, "max_tools")


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw body (read once: a signed request's signature covers these bytes, the JSON is parsed from them)."""
    raw_ctype = request.headers.get("Content-Type")
    # what every SDK sends skips aiohttp's header parsing; anything else is parsed (parameters, case)
    if raw_ctype and raw_ctype != "application/json" and (ctype := request.content_type) not in (
            "application/json", "text/plain", "application/x-www-form-urlencoded"):
        raise GatewayError(415, f"Content-Type must be application/json, got {ctype!r}.", INVALID_REQUEST,
                           code="unsupported_media_type")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(max_bytes) from None
    except RequestPayloadError:  # the parser gave up on the body (e.g. a Content-Encoding it cannot decode)
        raise bad_request("The request body cannot be decoded (content or transfer encoding).",
                          code="invalid_http_request") from None


def parse_json(raw: bytes, limits: InputLimits) -> dict[str, Any]:
    """A JSON object from the body, within `listen.limits` (nesting depth, size of one string)."""
    if not raw:
        raise bad_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"The request body is not valid JSON: {err}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    check_shape(raw, body, limits)
    return body


async def read_json(request: web.Request, max_bytes: int, limits: InputLimits) -> dict[str, Any]:
    return parse_json(await read_body(request, max_bytes), limits)


def too_large(max_bytes: int) -> GatewayError:
    return GatewayError(413, f"The request body exceeds the limit of {max_bytes} bytes.", INVALID_REQUEST,
                        code="request_too_large")


COUNT_UP_TO = 16 * 1024  # bodies up to this size are settled by counting brackets


def check_shape(raw: bytes, body: Any, limits: InputLimits) -> None:
    max_depth, max_string = limits.max_json_depth, limits.max_string_bytes
    n = len(raw)
    big = n > max_string
    if not big and n <= COUNT_UP_TO and raw.count(b"{") + raw.count(b"[") <= max_depth:
        return
    if not _fits(body, max_depth - 1, max_string if big else 0):
        _walk(body, max_depth, max_string if big else 0)  # raises, naming the place


def _fits(node: Any, room: int, max_string: int) -> bool:
    """False when a container nests more than `room` levels below `node`, or (max_string > 0) a string, value or
    key, is longer than `max_string` UTF-8 bytes. The fast pass: no paths, no allocation."""
    if type(node) is dict:
        if max_string and any(_too_long(k, max_string) for k in node):
            return False
        values: Any = node.values()
    else:
        values = node
    for v in values:
        t = type(v)
        if t is dict or t is list:
            if room < 1 or not _fits(v, room - 1, max_string):
                return False
        elif max_string and t is str and _too_long(v, max_string):
            return False
    return True


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
