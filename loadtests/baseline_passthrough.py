"""The ceiling for an aiohttp gateway: a bare pass-through with nothing but forwarding.

    python loadtests/baseline_passthrough.py --port 8091 --upstream http://127.0.0.1:9000/v1 --upstream-key sk-x

POST /v1/chat/completions forwards the body to the upstream and returns its body; streams are piped
chunk by chunk. benchmark.py measures the gateway as a ratio to this process.
"""

from __future__ import annotations

import argparse
import resource

import aiohttp
import uvloop
from aiohttp import web

SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


def build_app(upstream: str, upstream_key: str) -> web.Application:
    url = upstream.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {upstream_key}", "Content-Type": "application/json"}

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with request.app[SESSION].post(url, data=body, headers=headers) as up:
            if up.headers.get("Content-Type", "").startswith("text/event-stream"):
                resp = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
            return web.Response(status=up.status, body=await up.read(), content_type="application/json")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=10_000, limit_per_host=0, keepalive_timeout=30)
        async with aiohttp.ClientSession(connector=connector) as session:
            app[SESSION] = session
            yield

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--upstream", default="http://127.0.0.1:9000/v1")
    p.add_argument("--upstream-key", default="sk-upstream")
    args = p.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.install()
    web.run_app(build_app(args.upstream, args.upstream_key), host=args.host, port=args.port,
                print=None, access_log=None, backlog=4096)  # as the gateway's


if __name__ == "__main__":
    main()
