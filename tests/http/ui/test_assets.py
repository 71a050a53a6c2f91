"""The console's static assets: served at /ui from the package with content types, caching and a strict CSP."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from proxy.http.console.assets import CSP, load_assets
from tests.conftest import base_config

STATIC = Path(__file__).parents[3] / "proxy" / "http" / "console" / "static"


async def test_index_and_modules_are_served_with_types_csp_and_etags(gateway_factory, http):
    gw = await gateway_factory(base_config())
    async with http.get(gw.url + "/ui", allow_redirects=False) as r:
        assert r.status == 308 and r.headers["Location"] == "/ui/"
    async with http.get(gw.url + "/ui/") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-cache"
        etag = r.headers["ETag"]
        html = await r.text()
    async with http.get(gw.url + "/ui/", headers={"If-None-Match": etag}) as r:
        assert r.status == 304 and await r.read() == b""
    for src in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', html):
        async with http.get(gw.url + src) as r:
            assert r.status == 200, src
            want = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}[src.rsplit(".", 1)[1]]
            assert r.headers["Content-Type"].startswith(want), src
            assert r.headers["Content-Security-Policy"] == CSP
    async with http.get(gw.url + "/ui/static/nope.js") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    async with http.get(gw.url + "/ui/static/%2e%2e/assets.py") as r:  # nothing outside static/
        assert r.status == 404


def test_csp_allows_no_inline_code_and_nothing_from_elsewhere():
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert directives["frame-ancestors"] == "'none'"


def test_every_static_file_ships_in_the_package_and_has_no_inline_script_or_html_sink():
    on_disk = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file()}
    assert set(load_assets()) == on_disk
    data = tomllib.loads((STATIC.parents[3] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    globs = data["proxy"]
    for rel in on_disk:
        folder = ("http/console/static/" + rel).rsplit("/", 1)[0]
        assert f"{folder}/*" in globs, f"{rel} would not be installed"
    html = (STATIC / "index.html").read_text()
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html)), "inline script"
    assert "style=" not in html and "<style" not in html
    for js in STATIC.rglob("*.js"):
        text = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage",
                     "sessionStorage"):
            assert sink not in text, f"{js.name} uses {sink}"
