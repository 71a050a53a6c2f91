"""The standalone mock upstream (`gateway mock-upstream --port 9000`).

One aiohttp app; each wire format (OpenAI, Anthropic, Gemini, ...) is a module adding its routes.
Behaviour (reply, latency, faults) is shared and can be changed at runtime through `/_mock/*`:

  POST /_mock/config    {"reply": "lorem", "ttft": 0.2, "error_status": 500, "error_rate": 0.3, ...}
  POST /_mock/reset     back to the start-up behaviour, counters cleared
  GET  /_mock/stats     {"calls": {"/v1/chat/completions": 3}, "total": 3}
  GET  /_mock/requests  the last requests received (path, headers, JSON body) for assertions

Fault injection (MockBehaviour): `error_status` (+ `retry_after`), `error_rate`, `fail_first: N`
(only the first N calls fail), `fault`: drop (connection closed before any byte), hang (never
answers), malformed_json, wrong_content_type (a 200 HTML page), content_filter; `context_window`
(longer prompts get context_length_exceeded), `cut_after` (streams), `tokens_per_s` / `trickle`
(slow streams / slow non-stream bodies). Formats that cannot act out a `fault` answer 502.
"""

from __future__ import annotations

import asyncio
import importlib
import random
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from proxy.providers.settings import MockBehaviour

# wire-format modules in this package; each has `add_routes(app: web.Application, state: MockState)`
WIRE_FORMATS = ["openai", "openai_responses", "azure", "mistral", "ollama", "bedrock", "anthropic", "gemini"]

STATE_KEY: web.AppKey[MockState] = web.AppKey("mock_state")


class MockState:
    def __init__(self, behaviour: MockBehaviour, api_key: str | None = None) -> None:
        self.initial = behaviour
        self.behaviour = behaviour
        self.api_key = api_key  # when set, every wire format checks its own auth header against it
        self.calls: Counter[str] = Counter()
        self.requests: deque[dict[str, Any]] = deque(maxlen=200)
        self.in_flight = 0
        self.max_in_flight = 0
        self.faults_served = 0
        self._fault_behaviour: MockBehaviour | None = None

    def record(self, request: web.Request, body: Any) -> None:
        self.calls[request.path] += 1
        self.requests.append({"method": request.method, "path": request.path, "query": dict(request.query),
                              "headers": {str(k): v for k, v in request.headers.items()}, "body": body})

    def should_fail(self) -> int | None:
        """The error status to inject for this call, if any (a `fault` this format cannot act out
        becomes a 502, so it still fails)."""
        fault = self.next_fault()
        return 502 if isinstance(fault, str) else fault

    def next_fault(self) -> int | str | None:
        """What goes wrong with this call: an HTTP status, a `fault` name, or None for a normal reply.

        `error_rate` draws at random; `fail_first: N` fails exactly the first N calls (deterministic
        retry tests); otherwise a configured status / fault applies to every call."""
        b = self.behaviour
        if b is not self._fault_behaviour:  # a new behaviour restarts the `fail_first` count
            self._fault_behaviour, self.faults_served = b, 0
        if not (b.error_status or b.error_rate or b.fault or b.fail_first):
            return None
        if b.fail_first is not None:
            if self.faults_served >= b.fail_first:
                return None
        elif b.error_rate and random.random() >= b.error_rate:
            return None
        self.faults_served += 1
        return b.fault or b.error_status or 500

    async def delay(self, stream: bool) -> None:
        b = self.behaviour
        wait = b.ttft if stream else b.latency + b.ttft
        if wait:
            await asyncio.sleep(wait)

    def gap(self) -> float:
        tps = self.behaviour.tokens_per_s
        return 1.0 / tps if tps else 0.0


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json",
                        headers=headers)


async def send_json(request: web.Request, state: MockState, data: Any) -> web.StreamResponse:
    """A 200 JSON reply, trickled in 16-byte pieces when `trickle` is set (a slow upstream)."""
    gap = state.behaviour.trickle
    if not gap:
        return json_response(data)
    body = orjson.dumps(data)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = len(body)
    await resp.prepare(request)
    for i in range(0, len(body), 16):
        if i:
            await asyncio.sleep(gap)
        await resp.write(body[i:i + 16])
    await resp.write_eof()
    return resp


MALFORMED_JSON = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"


async def fault_response(request: web.Request, fault: str, stream: bool) -> web.StreamResponse:
    """Act out a transport-level fault, the same for every wire format."""
    if fault == "drop":  # the connection dies before any response byte
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError  # nothing can be sent: end the handler without a response
    if fault == "hang":  # accept the request and never answer
        await asyncio.sleep(3600)
    if fault == "wrong_content_type":  # e.g. an HTML error page from a proxy in front of the API
        return web.Response(body=HTML_PAGE, status=200, content_type="text/html")
    if stream:  # malformed_json: a 200 event stream whose first event is broken JSON
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + MALFORMED_JSON + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp
    return web.Response(body=MALFORMED_JSON, status=200, content_type="application/json")


async def read_json(request: web.Request, error: Callable[[int, str], web.Response]) -> Any:
    """The JSON body, or the wire format's own 400 error response raised as an exception."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise _Abort(error(400, "request body is not valid JSON")) from None


class _Abort(Exception):
    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response


def abort(response: web.StreamResponse) -> _Abort:
    """Raise `abort(error_response)` from a handler to answer with that response."""
    return _Abort(response)


@web.middleware
async def _abort_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except _Abort as a:
        return a.response
    finally:
        state.in_flight -= 1


async def _config(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        patch = orjson.loads(await request.read())
        state.behaviour = MockBehaviour.model_validate({**state.behaviour.model_dump(), **patch})
    except (orjson.JSONDecodeError, ValidationError, TypeError) as err:
        return json_response({"error": str(err)}, status=400)
    return json_response(state.behaviour.model_dump())


async def _reset(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.behaviour = state.initial
    state._fault_behaviour = None
    state.calls.clear()
    state.requests.clear()
    state.max_in_flight = state.in_flight
    return json_response({"ok": True})


async def _stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"calls": dict(state.calls), "total": sum(state.calls.values()),
                          "in_flight": state.in_flight, "max_in_flight": state.max_in_flight})


async def _requests(request: web.Request) -> web.Response:
    return json_response(list(request.app[STATE_KEY].requests))


def build_mock_app(behaviour: MockBehaviour | None = None, api_key: str | None = None) -> web.Application:
    app = web.Application(middlewares=[_abort_middleware], client_max_size=64 * 1024 * 1024)
    state = MockState(behaviour or MockBehaviour(), api_key)
    app[STATE_KEY] = state
    app.router.add_post("/_mock/config", _config)
    app.router.add_post("/_mock/reset", _reset)
    app.router.add_get("/_mock/stats", _stats)
    app.router.add_get("/_mock/requests", _requests)
    for name in WIRE_FORMATS:
        importlib.import_module(f"{__package__}.{name}").add_routes(app, state)
    return app


def run_mock_upstream(host: str, port: int, behaviour: MockBehaviour, api_key: str | None = None) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    print(f"mock upstream listening on http://{host}:{port}", flush=True)
    web.run_app(build_mock_app(behaviour, api_key), host=host, port=port, print=None, access_log=None, backlog=4096)
