"""Ollama under `/ollama`: native `/api/tags`, `/api/version` and the OpenAI-compatible `/v1` routes.

Ollama takes no key, so the `/v1` routes reuse the OpenAI handlers on a copy of the request that
carries the mock's own key. A model whose name starts with `missing` is not pulled: Ollama's 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from mockupstream import openai
from mockupstream.server import STATE_KEY, MockState, json_response

PREFIX = "/ollama"
MODELS = [{"name": "llama3.2:latest", "model": "llama3.2:latest", "modified_at": "2024-10-01T00:00:00Z",
           "size": 2019393189, "digest": "a80c4f17acd5", "details": {"format": "gguf", "family": "llama",
                                                                     "parameter_size": "3.2B",
                                                                     "quantization_level": "Q4_K_M"}}]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def keyless(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        headers = {**request.headers}
        if state.api_key is not None:
            headers["Authorization"] = f"Bearer {state.api_key}"
        request = request.clone(headers=headers)  # before reading: aiohttp cannot clone after
        body = await request.read()
        if request.method == "POST" and b'"model"' in body:
            try:
                model = orjson.loads(body).get("model")
            except (orjson.JSONDecodeError, AttributeError):
                model = None
            if isinstance(model, str) and model.startswith("missing"):
                state.record(request, None)
                return json_response({"error": {"message": f'model "{model}" not found, try pulling it first',
                                                "type": "api_error", "param": None, "code": None}}, status=404)
        return await handler(request)
    return wrapped


async def tags(request: web.Request) -> web.Response:
    request.app[STATE_KEY].record(request, None)
    return json_response({"models": MODELS})


async def version(request: web.Request) -> web.Response:
    return json_response({"version": "0.6.0"})


def add_routes(app: web.Application, state: MockState) -> None:
    app.router.add_get(PREFIX + "/api/tags", tags)
    app.router.add_get(PREFIX + "/api/version", version)
    app.router.add_post(PREFIX + "/v1/chat/completions", keyless(openai.chat_completions))
    app.router.add_post(PREFIX + "/v1/embeddings", keyless(openai.embeddings))
    app.router.add_get(PREFIX + "/v1/models", keyless(openai.models))
