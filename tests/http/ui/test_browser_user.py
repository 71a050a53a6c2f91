"""A user in the console, in a real browser: sign in, stream a reply in the playground, see the cost, a cache
hit, a clear 429, and their own usage."""

from __future__ import annotations

import re

from tests.conftest import DEV_KEY
from tests.http.ui.conftest import LIMITED_KEY, admin_post, console_config


async def test_sign_in_with_a_key_and_stream_a_reply_in_the_playground(gateway_factory, console):
    gw = await gateway_factory(console_config())
    c = await console(gw)
    await c.sign_in_key(DEV_KEY)
    await c.go("Playground")
    await c.send("hello from the browser")
    response = c.page.get_by_role("region", name="Response")
    await c.wait_done()
    assert await response.inner_text() == "hello from the browser"
    stats = await c.page.locator(".stats").inner_text()
    assert re.search(r"tokens: \d+ in, \d+ out", stats) and "cost $" in stats
    await c.shot("playground")
    # the key went to the gateway once: the browser holds an HttpOnly cookie, no storage, no key in the page
    cookies = await c.context.cookies()
    assert [(k["name"], k["httpOnly"], k["sameSite"]) for k in cookies] == [("gw_session", True, "Strict")]
    assert await c.page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert DEV_KEY not in await c.page.content()
    assert c.errors == []


async def test_sign_in_with_email_and_password_then_sign_out(gateway_factory, console, http):
    gw = await gateway_factory(console_config())
    await admin_post(http, gw, "/admin/users", {"email": "ada@example.com", "name": "Ada", "team": "research",
                                                "role": "member", "password": "correct horse battery"})
    c = await console(gw)
    await c.open()
    await c.page.get_by_label("Email").fill("ada@example.com")
    await c.page.get_by_label("Password", exact=True).fill("wrong password")
    await c.page.get_by_role("button", name="Sign in").click()
    await c.page.get_by_role("alert").filter(has_text="Sign-in failed").wait_for()
    await c.sign_in_password("ada@example.com", "correct horse battery")
    assert "Ada (member)" in await c.page.locator("#who").inner_text()
    names = await c.page.get_by_role("navigation", name="Main").get_by_role("link").all_inner_texts()
    assert names == ["Overview", "Usage", "Keys", "Playground"]
    await c.page.get_by_role("button", name="Sign out").click()
    await c.page.get_by_role("button", name="Sign in").wait_for()
    assert (await c.page.request.get(gw.url + "/ui/api/session")).status == 401


async def test_a_rate_limited_key_gets_a_clear_429_message(gateway_factory, console):
    gw = await gateway_factory(console_config())
    c = await console(gw)
    await c.sign_in_key(LIMITED_KEY)
    await c.go("Playground")
    await c.send("first")
    await c.wait_done()
    await c.send("second")
    alert = c.page.get_by_role("alert").filter(has_text="429")
    await alert.wait_for()
    text = await alert.inner_text()
    assert text.startswith("Rate limit reached (429): ") and re.search(r"try again in \d+ ?s", text, re.IGNORECASE)
    assert await c.page.get_by_role("region", name="Response").inner_text() == ""
    await c.shot("playground-429")


async def test_the_cost_of_a_call_appears_in_my_usage(gateway_factory, console):
    gw = await gateway_factory(console_config())
    c = await console(gw)
    await c.sign_in_key(DEV_KEY)
    await c.go("Playground")
    await c.send("count my cost")
    stats = await c.wait_done()
    cost = re.search(r"cost (\$[0-9.]+)", stats).group(1)
    assert cost != "$0.000000"
    await c.go("Usage")
    calls = c.page.get_by_role("table", name="My recent calls")
    row = calls.get_by_role("row").nth(1)  # newest first, under the header row
    cells = await row.get_by_role("cell").all_inner_texts()
    assert cells[1] == "demo" and cells[3] == cost and cells[4] == "200" and cells[6] == "miss"
    await c.shot("usage-member")
    await c.go("Overview")
    assert cost in await c.page.get_by_role("main").inner_text()
    await c.shot("overview-member")


async def test_the_same_prompt_twice_with_caching_on_shows_a_cache_hit(gateway_factory, console):
    gw = await gateway_factory(console_config(cache={"enabled": True}))
    c = await console(gw)
    await c.sign_in_key(DEV_KEY)
    await c.go("Playground")
    await c.send("cache me")
    first = await c.wait_done()
    assert "cache miss" in first
    await c.send("cache me")
    second = await c.wait_done()
    assert "cache hit" in second and "cost $0.000000" in second
    assert await c.page.get_by_role("region", name="Response").inner_text() == "cache me"
