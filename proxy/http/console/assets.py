"""GET /ui: the console's static assets (HTML, JS modules, CSS), shipped inside the package.

The files are read once, when the routes are added, and served from memory with their content type, an ETag
(a 304 answers a matching If-None-Match) and `Cache-Control: no-cache`, so a browser revalidates cheaply and
never runs a stale module after an upgrade. Every answer carries a strict Content-Security-Policy: scripts,
styles and connections from this origin only, no inline script or style, no framing. The console is a
single page (index.html) that routes on the URL fragment, so no catch-all route is needed; the JSON it
shows comes from the existing APIs and `/ui/api/*`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web

from proxy.core.errors import NOT_FOUND, GatewayError

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
         ".txt": "text/plain"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _walk(folder: Traversable, prefix: str = "") -> dict[str, Asset]:
    out: dict[str, Asset] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            out.update(_walk(entry, name + "/"))
            continue
        suffix = entry.name[entry.name.rfind("."):] if "." in entry.name else ""
        if suffix not in TYPES:
            continue
        body = entry.read_bytes()
        out[name] = Asset(body, TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return out


def load_assets() -> dict[str, Asset]:
    """Every servable file under static/, by its path relative to it (e.g. `js/app.js`)."""
    return _walk(resources.files(__package__).joinpath("static"))


def _serve(request: web.Request, asset: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers)


def add_routes(app: web.Application) -> None:
    assets = load_assets()
    index = assets["index.html"]

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect("/ui/")

    async def page(request: web.Request) -> web.Response:
        return _serve(request, index)

    async def static(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["path"])
        if asset is None:
            raise GatewayError(404, "No such console file.", NOT_FOUND, code="not_found")
        return _serve(request, asset)

    app.router.add_get("/ui", redirect)
    app.router.add_get("/ui/", page)
    app.router.add_get("/ui/static/{path:[A-Za-z0-9_./-]+}", static)
