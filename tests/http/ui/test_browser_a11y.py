"""Every view passes an axe-core scan (no serious or critical violation), is reachable by keyboard, and gets a
screenshot under tests/artifacts/console/."""

from __future__ import annotations

from typing import Any

from tests.conftest import DEV_KEY
from tests.http.ui.conftest import ADMIN_KEY, admin_post, console_config

ADMIN_VIEWS = ["Overview", "Usage", "Users", "Keys", "Budgets", "Audit", "Playground"]
MEMBER_VIEWS = ["Overview", "Usage", "Keys", "Playground"]


async def scan(page: Any) -> list[str]:
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


async def test_every_view_has_no_serious_accessibility_violation(gateway_factory, console, http):
    cfg = console_config(teams={"research": {"budget": {"usd": 50, "period": "monthly"}}})
    cfg["keys"][0].update(team="research", budget={"usd": 10, "period": "daily"})
    gw = await gateway_factory(cfg)
    await admin_post(http, gw, "/admin/users", {"email": "ada@example.com", "name": "Ada", "role": "member",
                                                "password": "correct horse battery"})
    await gw.openai(DEV_KEY).chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    c = await console(gw)
    await c.open()
    await c.page.get_by_role("button", name="Sign in").wait_for()
    problems = {"sign-in": await scan(c.page)}
    await c.shot("sign-in")
    await c.sign_in_key(ADMIN_KEY)
    for view in ADMIN_VIEWS:
        await c.go(view)
        problems[f"admin {view}"] = await scan(c.page)
        await c.shot(f"admin-{view.lower()}")
    member = await console(gw)
    await member.sign_in_key(DEV_KEY)
    for view in MEMBER_VIEWS:
        await member.go(view)
        problems[f"member {view}"] = await scan(member.page)
        await member.shot(f"member-{view.lower()}")
    assert {k: v for k, v in problems.items() if v} == {}
    assert c.errors == member.errors == []


async def test_the_console_is_usable_with_the_keyboard_alone(gateway_factory, console):
    gw = await gateway_factory(console_config())
    c = await console(gw)
    await c.open()
    await c.page.get_by_role("button", name="Sign in").wait_for()
    await c.page.keyboard.press("Tab")  # Email
    await c.page.keyboard.press("Tab")  # Password
    await c.page.keyboard.press("Tab")  # API key
    assert await c.page.evaluate("document.activeElement.name") == "api_key"
    await c.page.keyboard.type(DEV_KEY)
    await c.page.keyboard.press("Enter")
    await c.page.get_by_role("button", name="Sign out").wait_for()
    # reach the Playground link by tabbing, follow it, fill the form and send with the keyboard
    for _ in range(10):
        await c.page.keyboard.press("Tab")
        if await c.page.evaluate("document.activeElement.textContent") == "Playground":
            break
    assert await c.page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"  # visible focus
    await c.page.keyboard.press("Enter")
    await c.page.get_by_label("Message").focus()
    await c.page.keyboard.type("typed, not clicked")
    await c.page.keyboard.press("Tab")
    await c.page.keyboard.press("Enter")
    await c.wait_done()
    assert await c.page.get_by_role("region", name="Response").inner_text() == "typed, not clicked"
