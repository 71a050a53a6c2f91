"""An admin in the console, in a real browser: users and keys, a user's spend, the CSV export, what a viewer
may not see, secrets shown once, markup shown as text."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta

from tests.conftest import DEV_KEY, auth
from tests.http.ui.conftest import ADMIN_KEY, admin_post, console_config

XSS = "<script>window.__xss=1</script>"


async def test_admin_creates_a_user_and_a_key_the_user_spends_and_the_admin_sees_it(gateway_factory, console, http):
    gw = await gateway_factory(console_config())
    admin = await console(gw)
    await admin.sign_in_key(ADMIN_KEY)
    names = await admin.page.get_by_role("navigation", name="Main").get_by_role("link").all_inner_texts()
    assert names == ["Overview", "Usage", "Users", "Keys", "Budgets", "Audit", "Webhooks", "Playground"]

    await admin.go("Users")
    form = admin.page.get_by_role("form", name="Create a user")
    await form.get_by_label("Email").fill("grace@example.com")
    await form.get_by_label("Name").fill("Grace")
    await form.get_by_label("Team").fill("research")
    await form.get_by_label("Role").select_option("member")
    await form.get_by_label("Password (optional)").fill("a long enough password")
    await form.get_by_label("Budget (USD)").fill("20")
    await form.get_by_role("button", name="Create user").click()
    await admin.page.get_by_role("cell", name="grace@example.com", exact=True).wait_for()

    await admin.go("Keys")
    form = admin.page.get_by_role("form", name="Create a key")
    await form.get_by_label("Key name").fill("grace-laptop")
    await form.get_by_label("User").select_option(label="Grace <grace@example.com>")
    await form.get_by_label("Budget (USD)").fill("5")
    await form.get_by_role("button", name="Create key").click()
    secret_box = admin.page.get_by_role("status", name="New key secret")
    secret = await secret_box.locator("code").inner_text()
    assert secret.startswith("sk-gw-")
    await admin.shot("keys-secret-once")
    await secret_box.get_by_role("button", name="Done").click()
    assert secret not in await admin.page.content()  # shown once; gone from the page
    await admin.page.reload()
    await admin.page.get_by_role("cell", name="grace-laptop", exact=True).wait_for()
    assert secret not in await admin.page.content()
    assert await admin.page.evaluate("localStorage.length + sessionStorage.length") == 0

    user = await console(gw)
    await user.sign_in_password("grace@example.com", "a long enough password")
    await user.go("Playground")
    await user.send("spend a little")
    spent = (await user.wait_done()).split("cost ")[1]
    await user.go("Overview")
    budget = await user.page.get_by_role("region", name="My budget").inner_text()
    assert "$20.00 per month" in budget and "resets on" in budget
    await user.shot("overview-user-budget")

    await admin.go("Users")
    row = admin.page.get_by_role("row").filter(has_text="grace@example.com")
    assert spent in await row.inner_text()
    await admin.shot("users")
    await admin.go("Keys")
    row = admin.page.get_by_role("row").filter(has_text="grace-laptop")
    assert "never" not in await row.inner_text()  # last use shown
    await admin.shot("keys")

    await admin.go("Users")  # disabling the user ends their session and stops their keys
    await admin.page.get_by_role("button", name="Disable grace@example.com").click()
    await admin.page.get_by_role("button", name="Enable grace@example.com").wait_for()
    assert (await user.page.request.get(gw.url + "/ui/api/session")).status == 401
    async with http.get(gw.url + "/v1/models", headers=auth(secret)) as r:
        assert r.status == 401


async def test_csv_export_downloads_exactly_the_filtered_rows(gateway_factory, console, http):
    gw = await gateway_factory(console_config())
    client = gw.openai(DEV_KEY)
    for text in ("one", "two", "three"):
        await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": text}])
    await gw.openai("sk-test-limited").chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    admin = await console(gw)
    await admin.sign_in_key(ADMIN_KEY)
    await admin.go("Usage")
    await admin.page.get_by_label("Key", exact=True).fill("dev")
    await admin.page.get_by_label("Group by").select_option("key")
    await admin.page.get_by_role("button", name="Apply").click()
    await admin.page.get_by_role("cell", name="dev", exact=True).wait_for()
    async with admin.page.expect_download() as info:
        await admin.page.get_by_role("link", name="Export CSV").click()
    download = await info.value
    rows = list(csv.DictReader(io.StringIO(open(await download.path()).read())))
    today = datetime.now(UTC).date()
    query = {"key": "dev", "group_by": "key", "since": f"{today - timedelta(days=6)}T00:00:00Z",
             "until": f"{today + timedelta(days=1)}T00:00:00Z"}
    async with http.get(gw.url + "/admin/usage", params=query, headers=auth(ADMIN_KEY)) as r:
        want = (await r.json())["data"]
    assert [(r["key"], int(r["calls"]), float(r["cost_usd"])) for r in rows] == \
        [(w["key"], w["calls"], w["cost_usd"]) for w in want] == [("dev", 3, want[0]["cost_usd"])]
    await admin.shot("usage-admin")
    await admin.go("Overview")
    await admin.page.get_by_role("img", name="Success rate 100.0%.").wait_for()
    await admin.shot("overview-admin")


async def test_a_viewer_cannot_reach_admin_views_in_the_ui_or_the_api(gateway_factory, console, http):
    gw = await gateway_factory(console_config())
    await admin_post(http, gw, "/admin/users", {"email": "vic@example.com", "name": "Vic", "role": "viewer",
                                                "password": "viewer password 1"})
    c = await console(gw)
    await c.sign_in_password("vic@example.com", "viewer password 1")
    names = await c.page.get_by_role("navigation", name="Main").get_by_role("link").all_inner_texts()
    assert names == ["Overview", "Usage"]
    for view in ("users", "keys", "budgets", "audit", "playground"):
        await c.open(view)
        await c.page.get_by_role("alert").filter(has_text="Not allowed").wait_for()
    await c.shot("viewer-refused")
    for path in ("/admin/users", "/admin/usage", "/admin/keys", "/admin/audit"):
        r = await c.page.request.get(gw.url + path)
        assert r.status == 403, path
    r = await c.page.request.post(gw.url + "/admin/keys", data={"name": "sneaky"},
                                  headers={"x-csrf-token": (await c.session())["csrf_token"]})
    assert r.status == 403


async def test_markup_in_names_and_model_output_is_shown_as_text(gateway_factory, console, http):
    gw = await gateway_factory(console_config())
    await admin_post(http, gw, "/admin/users", {"email": "x@example.com", "name": XSS, "role": "member"})
    await admin_post(http, gw, "/admin/keys", {"name": XSS})
    admin = await console(gw)
    await admin.sign_in_key(ADMIN_KEY)
    await admin.go("Users")
    await admin.page.get_by_role("cell", name=XSS, exact=True).wait_for()
    await admin.go("Keys")
    await admin.page.get_by_role("cell", name=XSS, exact=True).wait_for()
    await admin.go("Audit")
    await admin.page.get_by_role("cell", name="key.create").first.wait_for()
    await admin.shot("audit")
    user = await console(gw)
    await user.sign_in_key(DEV_KEY)
    await user.go("Playground")
    await user.send(XSS)
    await user.wait_done()
    assert await user.page.get_by_role("region", name="Response").inner_text() == XSS
    for page in (admin.page, user.page):
        assert await page.evaluate("window.__xss") is None
        assert await page.locator("main script").count() == 0


async def test_admin_rotates_disables_and_limits_a_key(gateway_factory, console, http):
    gw = await gateway_factory(console_config())
    made = await admin_post(http, gw, "/admin/keys", {"name": "ci-bot"})
    admin = await console(gw)
    await admin.sign_in_key(ADMIN_KEY)
    await admin.go("Keys")
    await admin.page.get_by_role("button", name="Rotate ci-bot").click()
    box = admin.page.get_by_role("status", name="New key secret")
    new = await box.locator("code").inner_text()
    assert new != made["key"]
    await box.get_by_role("button", name="Done").click()
    async with http.get(gw.url + "/v1/models", headers=auth(made["key"])) as r:
        assert r.status == 401
    async with http.get(gw.url + "/v1/models", headers=auth(new)) as r:
        assert r.status == 200

    await admin.page.get_by_role("button", name="Edit limits of ci-bot").click()
    edit = admin.page.get_by_role("form", name="Edit limits of ci-bot")
    await edit.get_by_label("Requests per minute").fill("7")
    await edit.get_by_role("button", name="Save").click()
    row = admin.page.get_by_role("row").filter(has_text="ci-bot")
    await row.filter(has_text="7 rpm").wait_for()

    await admin.page.get_by_role("button", name="Disable ci-bot").click()
    await admin.page.get_by_role("button", name="Enable ci-bot").wait_for()
    assert "disabled" in await row.inner_text()
    async with http.get(gw.url + "/v1/models", headers=auth(new)) as r:
        assert r.status == 401
    async with http.get(gw.url + "/admin/keys/" + made["id"], headers=auth(ADMIN_KEY)) as r:
        key = await r.json()
    assert key["disabled"] is True and key["limits"]["rpm"] == 7


async def test_a_member_creates_their_own_key_and_sees_its_secret_once(gateway_factory, console, http):
    gw = await gateway_factory(console_config())
    await admin_post(http, gw, "/admin/users", {"email": "mo@example.com", "name": "Mo", "role": "member",
                                                "password": "member password 1"})
    c = await console(gw)
    await c.sign_in_password("mo@example.com", "member password 1")
    await c.go("Keys")
    form = c.page.get_by_role("form", name="Create a key")
    await form.get_by_label("Key name").fill("mo-script")
    await form.get_by_role("button", name="Create key").click()
    box = c.page.get_by_role("status", name="New key secret")
    secret = await box.locator("code").inner_text()
    await c.page.get_by_role("table", name="My keys").get_by_role("cell", name="mo-script", exact=True).wait_for()
    await c.shot("member-keys-created")
    await box.get_by_role("button", name="Done").click()
    assert secret not in await c.page.content()
    async with http.get(gw.url + "/v1/models", headers=auth(secret)) as r:
        assert r.status == 200


async def test_webhooks_view_lists_subscriptions_and_their_deliveries(gateway_factory, console, http):
    """A subscription created through the admin API, its `webhook.test` delivery to a receiver that answers
    503: the view shows the subscription and the failed attempt with its response code."""
    from aiohttp import web
    from playwright.async_api import expect

    from tests.conftest import serve

    async def receiver(request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/hook", receiver)
    target = await serve(app)
    try:
        gw = await gateway_factory(console_config(webhooks={"allow_private_targets": True}))
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with http.post(gw.url + "/admin/webhooks", headers=headers,
                             json={"url": target.url + "/hook", "events": ["webhook.test"],
                                   "description": "<b>ops</b> pager"}) as r:
            assert r.status == 201, await r.text()
            sub = await r.json()
        async with http.post(gw.url + f"/admin/webhooks/{sub['id']}/test", headers=headers) as r:
            assert r.status in (200, 202), await r.text()

        admin = await console(gw)
        await admin.sign_in_key(ADMIN_KEY)
        for _ in range(50):  # the first attempt runs in the background
            async with http.get(gw.url + f"/admin/webhooks/{sub['id']}/deliveries", headers=headers) as r:
                rows = (await r.json())["data"]
            if rows and rows[0].get("last_status") == 503:
                break
            await asyncio.sleep(0.1)
        await admin.go("Webhooks")
        subs = admin.page.get_by_role("table", name="Webhooks")
        await expect(subs).to_contain_text(target.url + "/hook")
        await expect(subs).to_contain_text("<b>ops</b> pager")  # markup shown as text
        deliveries = admin.page.get_by_role("table", name=f"Deliveries of webhook {sub['id']}")
        await expect(deliveries).to_contain_text("webhook.test")
        await expect(deliveries).to_contain_text("503")
        await admin.shot("admin-webhooks")
    finally:
        await target.close()
