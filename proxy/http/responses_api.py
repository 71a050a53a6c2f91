"""The OpenAI Responses API surface: `POST /v1/responses` (JSON or stream), for clients built on the OpenAI SDK's
`client.responses`. The request is translated onto the chat pipeline (proxy/inbound/responses/) for any
provider; errors are OpenAI's shape."""

from __future__ import annotations

from aiohttp import web

from proxy.http import inbound
from proxy.inbound.responses import ResponsesAPI

API = ResponsesAPI()
PREFIX = "/v1/responses"


async def create(request: web.Request) -> web.StreamResponse:
    return await inbound.serve(request, API)


def add_routes(app: web.Application) -> None:
    app.router.add_post(PREFIX, create)
