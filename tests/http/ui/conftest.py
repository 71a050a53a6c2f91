"""Browser tests of the console: the real gateway in-process, Debian's Chromium driven by Playwright.

Playwright's own browser download is not used: the system binary (installed by scripts/install-system-deps.sh,
run by `make test`) is launched with `executable_path`. Without it the tests skip, or fail under CI=true.
The async Playwright API runs in the test's event loop, beside the gateway the test started.
Screenshots of every view land in tests/artifacts/console/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEV_KEY, GatewayServer, auth, base_config, service_unavailable

ADMIN_KEY = "sk-test-admin"
LIMITED_KEY = "sk-test-limited"
ARTIFACTS = Path(__file__).parents[2] / "artifacts" / "console"
TIMEOUT_MS = 10_000


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
async def chromium_browser() -> AsyncIterator[Any]:
    path = chromium_path()
    if path is None:
        service_unavailable("chromium is not installed (scripts/install-system-deps.sh installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=path, args=["--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        await b.close()


def console_config(**overrides: Any) -> dict[str, Any]:
    """`demo` echoes the last user message (so markup a user sends comes back as model output) and has a
    price, so calls cost something; a key limited to one request per minute; the admin key."""
    cfg = base_config(**overrides)
    cfg["providers"] = {"mock": {"type": "mock", "mock": {"reply": "echo"}}}
    cfg["pricing"] = {"mock-1": {"input": 1000, "output": 2000}}
    cfg["admin"] = {"key": ADMIN_KEY}
    cfg["keys"] = [{"name": "dev", "key": DEV_KEY, "models": ["*"]},
                   {"name": "limited", "key": LIMITED_KEY, "models": ["*"], "limits": {"rpm": 1}}]
    cfg.update(overrides)
    return cfg


class Console:
    """One browser context (its own cookies) on the console of `gw`."""

    def __init__(self, gw: GatewayServer, context: Any, page: Any) -> None:
        self.gw = gw
        self.context = context
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    async def open(self, view: str = "") -> None:
        await self.page.goto(self.gw.url + "/ui/" + (f"#/{view}" if view else ""))

    async def sign_in_key(self, key: str) -> None:
        await self.open()
        await self.page.get_by_label("API key").fill(key)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.get_by_role("button", name="Sign out").wait_for()

    async def sign_in_password(self, email: str, password: str) -> None:
        await self.open()
        await self.page.get_by_label("Email").fill(email)
        await self.page.get_by_label("Password", exact=True).fill(password)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.get_by_role("button", name="Sign out").wait_for()

    def nav(self, name: str) -> Any:
        return self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)

    async def go(self, name: str) -> None:
        await self.nav(name).click()
        await self.page.get_by_role("heading", level=1, name=name).wait_for()  # rendered once its data arrived

    async def send(self, message: str, model: str = "demo") -> None:
        await self.page.get_by_label("Model").select_option(model)
        await self.page.get_by_label("Message").fill(message)
        await self.page.get_by_role("button", name="Send").click()

    async def wait_done(self) -> str:
        """The playground's status line once the answer (or an error) is complete."""
        # locator waits, not wait_for_function: the console's CSP forbids the eval that polling would use
        stats = self.page.locator(".stats").filter(has_text="Done in").filter(has_text="cost")
        await stats.wait_for()
        return await stats.inner_text()

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    async def session(self) -> dict[str, Any]:
        r = await self.page.request.get(self.gw.url + "/ui/api/session")
        return await r.json()


@pytest.fixture
async def console(chromium_browser: Any) -> AsyncIterator[Any]:
    """console(gw) -> a signed-out Console in a fresh browser context."""
    contexts: list[Any] = []

    async def make(gw: GatewayServer) -> Console:
        ctx = await chromium_browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        ctx.set_default_timeout(TIMEOUT_MS)
        contexts.append(ctx)
        return Console(gw, ctx, await ctx.new_page())

    yield make
    for c in contexts:
        await c.close()


async def admin_post(http: Any, gw: GatewayServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(gw.url + path, json=body, headers=auth(ADMIN_KEY)) as r:
        assert r.status in (200, 201), await r.text()
        return await r.json()
