"""HTTP endpoints of the OpenAI surface: parse and validate input, then hand over to the pipeline."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable
from typing import Any

import orjson
from aiohttp import web

from proxy.config.listen import InputLimits
from proxy.core.context import RequestContext
from proxy.core.errors import GatewayError, bad_request, model_not_found
from proxy.core.identity import KeyInfo
from proxy.gateway import GATEWAY, Gateway
from proxy.http.lifecycle import request_json, serve
from proxy.http.limits import check_lengths
from proxy.pipeline import AGENT_PREFIX

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")
_NUMBER = (int, float)
CHAIN_PREFIX = "chain/"  # `model` of a named chain (proxy.chains, proxy/http/chains.py)


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


def validate_chat(body: dict[str, Any], limits: InputLimits) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("Missing required parameter: 'model'." if model is None else
                          "Invalid type for 'model': expected a non-empty string.", param="model")
    messages = body.get("messages")
    if messages is None:
        raise bad_request("Missing required parameter: 'messages'.", param="messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("Invalid 'messages': expected a non-empty array of messages.", param="messages")
    check_lengths(body, limits)
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
    if isinstance(inp, list) and not _embedding_items(inp):
        raise bad_request("Invalid 'input': expected a string, an array of strings, an array of integers (tokens) or "
                          "an array of non-empty arrays of integers.", param="input", code="invalid_type")


def _embedding_items(inp: list[Any]) -> bool:
    """OpenAI's shapes of an `input` array: all strings, all token ids, or all non-empty arrays of token ids."""
    first = type(inp[0])
    if first is str:
        return all(type(x) is str for x in inp)
    if first is int:
        return all(type(x) is int for x in inp)
    return all(type(x) is list and x and all(type(t) is int for t in x) for x in inp)


def new_context(request: web.Request, kind: str) -> RequestContext:
    ctx = RequestContext.new(kind, request.headers.get("x-request-id"), request.remote or "")
    ctx.request_headers = request.headers
    tp = request.headers.get("traceparent")
    if tp and (m := _TRACEPARENT.match(tp)):
        ctx.trace_id = m.group(1)
        # we are a new span in the caller's trace: same trace id, our own parent id
        ctx.traceparent = f"00-{ctx.trace_id}-{os.urandom(8).hex()}-{m.group(2)}"
    return ctx


class _Chat:
    """POST /v1/chat/completions, an Endpoint of the request lifecycle (proxy/http/lifecycle.py)."""

    kind = "chat"

    def body(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> Awaitable[dict[str, Any]]:
        return request_json(gw, ctx, request)

    def prepare(self, gw: Gateway, ctx: RequestContext, raw: dict[str, Any]) -> dict[str, Any]:
        validate_chat(raw, gw.cfg.listen.limits)
        ctx.stream = bool(raw.get("stream"))
        return raw

    def answer(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> Awaitable[web.StreamResponse]:
        if ctx.alias.startswith(CHAIN_PREFIX):  # a named chain: its steps are the metered calls, not this one
            from proxy.http.chains import chat_chain  # (it imports this module)

            ctx.delegated = True
            assert ctx.key is not None
            return chat_chain(request, ctx.key, ctx.body)
        return gw.pipeline.chat(ctx, request)

    def failed(self, ctx: RequestContext, err: GatewayError) -> web.StreamResponse:
        return err.response(ctx.response_headers())


class _Embeddings(_Chat):
    """POST /v1/embeddings."""

    kind = "embeddings"

    def prepare(self, gw: Gateway, ctx: RequestContext, raw: dict[str, Any]) -> dict[str, Any]:
        validate_embeddings(raw)
        return raw

    def answer(self, gw: Gateway, ctx: RequestContext, request: web.Request) -> Awaitable[web.StreamResponse]:
        return gw.pipeline.embeddings(ctx, request)


CHAT, EMBEDDINGS = _Chat(), _Embeddings()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await serve(request.app[GATEWAY], new_context(request, "chat"), request, CHAT)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve(request.app[GATEWAY], new_context(request, "embeddings"), request, EMBEDDINGS)


def _model(alias: str, owner: str = "gateway") -> dict[str, Any]:
    return {"id": alias, "object": "model", "created": 0, "owned_by": owner}


async def authenticate_bodyless(gw: Gateway, request: web.Request) -> KeyInfo:
    """The caller's key on a route without a JSON body (GET): a signed key's signature covers the body as
    sent (empty, normally)."""
    key = await gw.pipeline.auth.authenticate(request)
    if key.signing_secret is not None:
        body = await request.read() if request.body_exists else b""
        await gw.pipeline.auth.verify_signature(key, request, body)
    return key


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    key = await authenticate_bodyless(gw, request)  # a GatewayError leaves through the openai_errors middleware
    data = [_model(alias) for alias in gw.cfg.live_aliases() if key.may_use(alias)]
    # agents (`agent/<name>`) the key may call: it must be allowed the agent and the agent's alias
    data += [_model(AGENT_PREFIX + a.name, "gateway-agent") for a in await gw.agents.live()
             if key.may_use(AGENT_PREFIX + a.name) and key.may_use(a.model)]
    return web.json_response({"object": "list", "data": data}, dumps=lambda o: orjson.dumps(o).decode())


async def get_model(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    key = await authenticate_bodyless(gw, request)
    alias = request.match_info["model"]
    if alias.startswith(AGENT_PREFIX):
        try:
            agent = await gw.agents.resolve(alias)
        except GatewayError as err:
            if err.status != 404:
                raise
            agent = None
        if agent is None or not key.may_use(AGENT_PREFIX + agent.name) or not key.may_use(agent.model):
            raise model_not_found(alias)
        return web.json_response(_model(alias, "gateway-agent"))
    if alias not in gw.cfg.live_aliases() or not key.may_use(alias):
        raise model_not_found(alias)
    return web.json_response(_model(alias))


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
    r.add_get("/v1/models/{model:.+}", get_model)  # `agent/<name>[@v]` holds a slash
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
