"""HTTP endpoints of the OpenAI surface: parse and validate input, then hand over to the pipeline."""

from __future__ import annotations

import os
import re
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from proxy.core.context import RequestContext
from proxy.core.errors import INVALID_REQUEST, GatewayError, bad_request
from proxy.gateway import GATEWAY, Gateway

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")
_NUMBER = (int, float)
CHAIN_PREFIX = "chain/"  # `model` of a named chain (proxy.chains, proxy/http/chains.py)


async def read_json(request: web.Request, max_bytes: int) -> dict[str, Any]:
    raw_ctype = request.headers.get("Content-Type")
    # what every SDK sends skips aiohttp's header parsing; anything else is parsed (parameters, case)
    if raw_ctype and raw_ctype != "application/json" and (ctype := request.content_type) not in (
            "application/json", "text/plain", "application/x-www-form-urlencoded"):
        raise GatewayError(415, f"Content-Type must be application/json, got {ctype!r}.", INVALID_REQUEST,
                           code="unsupported_media_type")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(max_bytes) from None
    except RequestPayloadError:  # the parser gave up on the body (e.g. a Content-Encoding it cannot decode)
        raise bad_request("The request body cannot be decoded (content or transfer encoding).",
                          code="invalid_http_request") from None
    if not raw:
        raise bad_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"The request body is not valid JSON: {err}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return body


def too_large(max_bytes: int) -> GatewayError:
    return GatewayError(413, f"The request body exceeds the limit of {max_bytes} bytes.", INVALID_REQUEST,
                        code="request_too_large")


def _type_check(body: dict[str, Any], name: str, types: tuple[type, ...] | type, what: str) -> None:
    v = body.get(name)
    if v is not None and (not isinstance(v, types) or (isinstance(v, bool) and bool not in _as_tuple(types))):
        raise bad_request(f"Invalid type for '{name}': expected {what}.", param=name, code="invalid_type")


def _as_tuple(t: tuple[type, ...] | type) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


_CHAT_TYPES: dict[str, tuple[tuple[type, ...] | type, str]] = {
    "stream": (bool, "a boolean"), "stream_options": (dict, "an object"), "max_tokens": (int, "an integer"),
    "max_completion_tokens": (int, "an integer"), "n": (int, "an integer"), "temperature": (_NUMBER, "a number"),
    "top_p": (_NUMBER, "a number"), "tools": (list, "an array"),
    "stop": ((str, list), "a string or an array of strings"),
}


# OpenAI's message roles, and those whose `content` is required (a string or a non-empty array of parts;
# assistant content may be null when it carries tool_calls, function content may be null)
_ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))
_CONTENT_REQUIRED = frozenset(("system", "developer", "user", "tool"))
MAX_N = 128  # OpenAI's maximum for `n`


def _check_content(msg: dict[str, Any], i: int) -> None:
    """A message whose role requires `content` has a string or a non-empty array there."""
    content, param = msg.get("content"), f"messages[{i}].content"
    if isinstance(content, list):
        if content:
            return
        raise bad_request(f"Invalid '{param}': empty array. Expected an array with minimum length 1.",
                          param=param, code="empty_array")
    if "content" not in msg:
        raise bad_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    got = "null" if content is None else type(content).__name__
    raise bad_request(f"Invalid type for '{param}': expected a string or an array of content parts, but got {got} "
                      "instead.", param=param, code="invalid_type")


def validate_chat(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("Missing required parameter: 'model'." if model is None else
                          "Invalid type for 'model': expected a non-empty string.", param="model")
    messages = body.get("messages")
    if messages is None:
        raise bad_request("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("Invalid 'messages': expected a non-empty array of messages.", param="messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(role := msg.get("role"), str):
            raise bad_request(f"Invalid 'messages[{i}]': each message needs a string 'role'.",
                              param=f"messages[{i}].role")
        if role not in _ROLES:
            raise bad_request(f"Invalid value: {role[:64]!r}. Supported values are: 'system', 'developer', 'user', "
                              "'assistant', 'tool', and 'function'.", param=f"messages[{i}].role",
                              code="invalid_value")
        if role in _CONTENT_REQUIRED and type(msg.get("content")) is not str:
            _check_content(msg, i)
    present = [name for name in _CHAT_TYPES if name in body]  # usually 0-2 of them: check only those
    for name in present:
        _type_check(body, name, *_CHAT_TYPES[name])
    for name in present:
        if _CHAT_TYPES[name][1] == "an integer" and body[name] is not None and body[name] < 1:
            raise bad_request(f"Invalid '{name}': must be at least 1.", param=name)
    if (n := body.get("n")) is not None and n > MAX_N:
        raise bad_request(f"Invalid 'n': integer above maximum value. Expected a value <= {MAX_N}, but got {n} "
                          "instead.", param="n", code="integer_above_max_value")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise bad_request("'stream_options' is only allowed when 'stream' is true.", param="stream_options")


def validate_embeddings(body: dict[str, Any]) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("Missing required parameter: 'model'.", param="model")
    inp = body.get("input")
    if inp is None:
        raise bad_request("Missing required parameter: 'input'.", param="input")
    if not isinstance(inp, str | list) or (isinstance(inp, list) and not inp):
        raise bad_request("Invalid 'input': expected a string or a non-empty array.", param="input")


def new_context(request: web.Request, kind: str) -> RequestContext:
    ctx = RequestContext.new(kind, request.headers.get("x-request-id"), request.remote or "")
    ctx.request_headers = request.headers
    tp = request.headers.get("traceparent")
    if tp and (m := _TRACEPARENT.match(tp)):
        ctx.trace_id = m.group(1)
        # we are a new span in the caller's trace: same trace id, our own parent id
        ctx.traceparent = f"00-{ctx.trace_id}-{os.urandom(8).hex()}-{m.group(2)}"
    return ctx


async def _serve(request: web.Request, kind: str) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    ctx = new_context(request, kind)
    gw.in_flight(kind, +1)
    metered = True
    try:
        await gw.pipeline.authenticate(ctx, request)  # 401 before the body is read or judged
        body = await read_json(request, gw.cfg.listen.max_body_bytes)
        if kind == "chat":
            validate_chat(body)
            ctx.stream = bool(body.get("stream"))
            if body["model"].startswith(CHAIN_PREFIX):  # a named chain: its steps are the metered calls
                metered = False
                from proxy.http.chains import chat_chain  # (imports this module)

                assert ctx.key is not None
                return await chat_chain(request, ctx.key, body)
        else:
            validate_embeddings(body)
        ctx.body, ctx.alias = body, body["model"]
        if kind == "chat":
            return await gw.pipeline.chat(ctx, request)
        return await gw.pipeline.embeddings(ctx, request)
    except GatewayError as err:
        ctx.fail(err)
        return err.response(ctx.response_headers())
    except Exception:
        ctx.status, ctx.error_type = 500, "internal_error"
        raise
    finally:
        gw.in_flight(kind, -1)
        if metered:
            gw.pipeline.meter.finish(ctx)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "chat")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "embeddings")


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    try:
        key = await gw.pipeline.auth.authenticate(request)
    except GatewayError as err:
        return err.response()
    data = [{"id": alias, "object": "model", "created": 0, "owned_by": "gateway"}
            for alias in gw.cfg.live_aliases() if key.may_use(alias)]
    return web.json_response({"object": "list", "data": data}, dumps=lambda o: orjson.dumps(o).decode())


async def get_model(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    try:
        key = await gw.pipeline.auth.authenticate(request)
    except GatewayError as err:
        return err.response()
    alias = request.match_info["model"]
    if alias not in gw.cfg.live_aliases() or not key.may_use(alias):
        return GatewayError(404, f"The model {alias!r} does not exist or you do not have access to it.",
                            "invalid_request_error", code="model_not_found", param="model").response()
    return web.json_response({"id": alias, "object": "model", "created": 0, "owned_by": "gateway"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    problems = await gw.readiness()
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/chat/completions", chat_completions)
    r.add_post("/chat/completions", chat_completions)
    r.add_post("/v1/embeddings", embeddings)
    r.add_post("/embeddings", embeddings)
    r.add_get("/v1/models", list_models)
    r.add_get("/v1/models/{model}", get_model)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
