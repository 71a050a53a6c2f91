"""The admin API of webhooks: validation (422 naming the field), safe targets, gateway.yaml subscriptions."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest

from proxy.config import ConfigError, parse_config
from tests.conftest import DEV_KEY, GatewayFactory
from tests.webhooks.conftest import Receiver, admin_call, hook_config, subscribe

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://example.com/x", "events": ["key.created"]}, "url"),
    ({"url": "example.com/x", "events": ["key.created"]}, "url"),
    ({"url": "https://user:pw@example.com/x", "events": ["key.created"]}, "url"),
    ({"url": "https://example.com/x", "events": ["key.created", "key.exploded"]}, "events"),
    ({"url": "https://example.com/x", "events": []}, "events"),
    ({"url": "https://example.com/x"}, "events"),
    ({"url": "https://example.com/x", "events": ["key.created"], "filter": {"keys": "dev"}}, "filter.keys"),
    ({"url": "https://example.com/x", "events": ["key.created"], "colour": "red"}, "colour"),
])
async def test_invalid_subscriptions_get_422_naming_the_field(gateway_factory: GatewayFactory,
                                                              http: aiohttp.ClientSession, body: dict[str, Any],
                                                              field: str) -> None:
    gw = await gateway_factory(hook_config())
    status, data = await admin_call(http, gw, "POST", "/admin/webhooks", body)
    assert status == 422, data
    assert data["error"]["param"] == field
    if field == "events" and "events" in body and body["events"]:
        assert "key.exploded" in data["error"]["message"]


async def test_private_targets_are_refused_unless_allowed(gateway_factory: GatewayFactory,
                                                          http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(hook_config(webhooks={"allow_private_targets": False}))
    for url in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://10.1.2.3/x", "http://169.254.169.254/x",
                "http://[::1]:9/x", "http://192.168.0.1/x"):
        status, data = await admin_call(http, gw, "POST", "/admin/webhooks", {"url": url, "events": ["key.created"]})
        assert status == 422 and data["error"]["param"] == "url", (url, data)
        assert "allow_private_targets" in data["error"]["message"]
    status, sub = await admin_call(http, gw, "POST", "/admin/webhooks",
                                   {"url": "https://93.184.215.14/hook", "events": ["key.created"]})
    assert status == 201
    status, data = await admin_call(http, gw, "PATCH", f"/admin/webhooks/{sub['id']}", {"url": "http://127.0.0.1/x"})
    assert status == 422 and data["error"]["param"] == "url"


async def test_delivery_refuses_a_private_address_at_connect_time(gateway_factory: GatewayFactory,
                                                                 http: aiohttp.ClientSession,
                                                                 receiver: Receiver) -> None:
    """A subscription written while the name was public, now resolving to loopback (DNS rebinding)."""
    gw = await gateway_factory(hook_config(webhooks={"allow_private_targets": False, "retry_schedule": []}))
    store = gw.gateway.webhooks.store
    for _ in range(100):
        if gw.gateway.webhooks.registry.loaded:
            break
        await asyncio.sleep(0.05)
    url = receiver.url.replace("127.0.0.1", "localhost")
    row = await store.create_subscription({"url": url, "events": ["key.created"], "active": True}, SECRET)
    await gw.gateway.webhooks.changed()
    await admin_call(http, gw, "POST", f"/admin/webhooks/{row['id']}/test")
    for _ in range(100):
        _, deliveries = await admin_call(http, gw, "GET", f"/admin/webhooks/{row['id']}/deliveries")
        if deliveries["data"][0]["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    (d,) = deliveries["data"]
    assert d["status"] == "failed" and d["last_error"].startswith("refused target")
    assert receiver.got == []


async def test_crud_and_audit(gateway_factory: GatewayFactory, http: aiohttp.ClientSession,
                              receiver: Receiver) -> None:
    gw = await gateway_factory(hook_config())
    sub = await subscribe(http, gw, receiver, ["budget.threshold"], description="billing",
                          filter={"teams": ["research"]})
    assert sub["filter"] == {"keys": [], "teams": ["research"]} and sub["active"] is True
    status, patched = await admin_call(http, gw, "PATCH", f"/admin/webhooks/{sub['id']}",
                                       {"events": ["budget.threshold", "budget.exceeded"], "active": False})
    assert status == 200 and patched["events"] == ["budget.threshold", "budget.exceeded"] and not patched["active"]
    for body, field in (({}, "body"), ({"url": None}, "url"), ({"events": ["nope"]}, "events")):
        status, data = await admin_call(http, gw, "PATCH", f"/admin/webhooks/{sub['id']}", body)
        assert status == 422 and data["error"]["param"] == field
    status, listing = await admin_call(http, gw, "GET", "/admin/webhooks")
    assert [s["id"] for s in listing["data"]] == [sub["id"]]
    status, _ = await admin_call(http, gw, "DELETE", f"/admin/webhooks/{sub['id']}")
    assert status == 200
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/rotate-secret"), ("POST", "/test"),
                         ("GET", "/deliveries")):
        status, data = await admin_call(http, gw, method, f"/admin/webhooks/{sub['id']}{path}", {"active": True})
        assert status == 404 and data["error"]["code"] == "webhook_not_found", (method, path)
    _, audit = await admin_call(http, gw, "GET", f"/admin/audit?target={sub['id']}")
    assert {e["action"] for e in audit["data"]} == {"webhook.create", "webhook.update", "webhook.delete"}
    assert receiver.secrets[0] not in str(audit)
    # the admin key is required
    status, data = await admin_call(http, gw, "GET", "/admin/webhooks", key=DEV_KEY)
    assert status == 403


async def test_subscriptions_from_gateway_yaml_are_read_only_and_deliver(
        gateway_factory: GatewayFactory, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    receiver.secrets.append(SECRET)
    cfg = hook_config(webhooks={"subscriptions": [{"name": "ops", "url": receiver.url, "events": ["key.created"],
                                                   "secret": SECRET}]})
    gw = await gateway_factory(cfg)
    for _ in range(100):
        if gw.gateway.webhooks.registry.loaded:
            break
        await asyncio.sleep(0.05)
    status, sub = await admin_call(http, gw, "GET", "/admin/webhooks/cfg:ops")
    assert status == 200 and sub["source"] == "config" and sub["read_only"] is True and SECRET not in str(sub)
    for method, path in (("PATCH", ""), ("DELETE", ""), ("POST", "/rotate-secret")):
        status, data = await admin_call(http, gw, method, f"/admin/webhooks/cfg:ops{path}", {"active": False})
        assert status == 409 and data["error"]["code"] == "read_only_webhook"
    await admin_call(http, gw, "POST", "/admin/keys", {"name": "from-yaml"})
    await receiver.wait_for(lambda r: len(r.got) == 1)
    assert receiver.got[0].verified and receiver.got[0].payload["type"] == "key.created"
    # the secret of a gateway.yaml subscription stays in the config, never in the database
    rows = await gw.gateway.webhooks.store.all_subscriptions()
    assert [r["secret"] for r in rows] == [None]


def test_config_validation_names_the_field() -> None:
    ok = {"url": "https://example.com/h", "events": ["key.created"], "secret": SECRET}
    parse_config({"webhooks": [ok]}, env={})  # the list shorthand
    cases = [
        ({"subscriptions": [{**ok, "secret": "${HOOK_SECRET}"}]}, "webhooks.subscriptions.0.secret"),
        ({"subscriptions": [{**ok, "secret": "nope"}]}, "webhooks.subscriptions.0.secret"),
        ({"subscriptions": [{**ok, "secret": "whsec_" + base64.b64encode(b"x" * 8).decode()}]},
         "webhooks.subscriptions.0.secret"),
        ({"subscriptions": [{**ok, "events": ["nope"]}]}, "webhooks.subscriptions.0.events"),
        ({"subscriptions": [{**ok, "url": "file:///etc/passwd"}]}, "webhooks.subscriptions.0.url"),
        ({"invocation_sample_rate": 2}, "webhooks.invocation_sample_rate"),
        ({"subscriptions": [{**ok, "name": "a"}, {**ok, "name": "a"}]}, "names must be unique"),
    ]
    for section, where in cases:
        with pytest.raises(ConfigError) as err:
            parse_config({"webhooks": section}, env={})
        assert where in str(err.value), (section, str(err.value))
    cfg = parse_config({"webhooks": {"subscriptions": [{**ok, "secret": "${HOOK_SECRET}"}]}},
                       env={"HOOK_SECRET": SECRET})
    assert cfg.webhooks.subscriptions[0].secret == SECRET
