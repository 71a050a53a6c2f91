"""Webhook delivery through the real server to a real receiver that verifies with `standardwebhooks`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any

import aiohttp

from tests.admission.conftest import PRICING, with_key
from tests.conftest import DEV_KEY, GatewayFactory
from tests.webhooks.conftest import Receiver, admin_call, hook_config, subscribe


async def test_test_event_is_signed_as_the_standard_webhooks_spec_says(
        gateway_factory: GatewayFactory, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(hook_config())
    sub = await subscribe(http, gw, receiver, ["key.created"], description="ops")
    assert sub["id"].startswith("wh_") and sub["secret"].startswith("whsec_")
    assert 24 <= len(base64.b64decode(sub["secret"][6:])) <= 64
    status, data = await admin_call(http, gw, "POST", f"/admin/webhooks/{sub['id']}/test")
    assert status == 202 and data["event_type"] == "webhook.test"
    await receiver.wait_for(lambda r: len(r.got) == 1)
    d = receiver.got[0]
    assert d.verified
    assert d.payload["type"] == "webhook.test" and d.payload["data"]["subscription_id"] == sub["id"]
    assert set(d.payload) == {"type", "timestamp", "data"}
    # the signature is the spec's HMAC, computed here with the standard library alone
    key = base64.b64decode(sub["secret"][6:])
    mac = hmac.new(key, f"{d.id}.{d.timestamp}.".encode() + d.body, hashlib.sha256).digest()
    assert d.signature == "v1," + base64.b64encode(mac).decode()
    assert d.id == data["event_id"] and d.id.startswith("msg_")
    # the secret is shown once: never in a listing
    for path in ("/admin/webhooks", f"/admin/webhooks/{sub['id']}"):
        status, listing = await admin_call(http, gw, "GET", path)
        assert status == 200 and sub["secret"] not in str(listing) and "secret" not in str(listing)
    row = await _settled(http, gw, sub["id"])
    assert row["status"] == "delivered" and row["attempts"] == 1 and row["last_status"] == 200
    assert row["next_attempt_at"] is None and "body" not in row


async def test_invocation_and_key_events_carry_what_a_receiver_needs_and_no_secret(
        gateway_factory: GatewayFactory, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    cfg = with_key(hook_config(pricing=PRICING), user="alice", team="research")
    gw = await gateway_factory(cfg)
    await subscribe(http, gw, receiver, ["invocation.completed", "invocation.failed", "key.created", "key.rotated",
                                         "key.revoked"])
    client = gw.openai()
    await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hello there"}])
    status, _ = await admin_call(http, gw, "POST", "/admin/keys", {"name": "svc", "team": "ops"})
    assert status == 201
    status, created = await admin_call(http, gw, "POST", "/admin/keys", {"name": "svc2"})
    await admin_call(http, gw, "POST", f"/admin/keys/{created['id']}/rotate", {"grace_seconds": 60})
    await admin_call(http, gw, "DELETE", f"/admin/keys/{created['id']}")
    async with http.post(gw.base_url + "/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
                         headers={"Authorization": f"Bearer {DEV_KEY}"}) as r:
        assert r.status >= 400
    await receiver.wait_for(lambda r: len(r.got) >= 6)
    assert all(d.verified for d in receiver.got)
    (done,) = receiver.of_type("invocation.completed")
    data = done.payload["data"]
    assert data["key"] == {"id": "cfg:dev", "name": "dev"} and data["user"] == "alice" and data["team"] == "research"
    assert data["alias"] == "demo" and data["provider"] == "mock" and data["model"] == "mock-1"
    assert data["status"] == 200 and data["tokens"]["prompt"] > 0 and data["tokens"]["completion"] > 0
    assert data["cost_usd"] > 0 and data["latency_ms"] > 0 and data["request_id"]
    (failed,) = receiver.of_type("invocation.failed")
    assert failed.payload["data"]["status"] == 404 and failed.payload["data"]["error_type"]
    created_events = receiver.of_type("key.created")
    assert {e.payload["data"]["key"]["name"] for e in created_events} == {"svc", "svc2"}
    assert [e.payload["data"]["key"]["team"] for e in created_events if e.payload["data"]["key"]["name"] == "svc"] \
        == ["ops"]
    (rotated,) = receiver.of_type("key.rotated")
    assert rotated.payload["data"]["grace_seconds"] == 60 and rotated.payload["data"]["key"]["id"] == created["id"]
    (revoked,) = receiver.of_type("key.revoked")
    assert revoked.payload["data"]["reason"] == "deleted"
    text = b" ".join(d.body for d in receiver.got).decode()
    assert "sk-gw-" not in text and DEV_KEY not in text and "sha256" not in text and receiver.secrets[0] not in text


async def test_retries_with_growing_delays_on_500_and_timeouts_with_the_same_id(
        gateway_factory: GatewayFactory, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(hook_config(webhooks={"retry_schedule": [0.3, 0.9, 2.0], "timeout": 0.5}))
    sub = await subscribe(http, gw, receiver, ["key.created"])
    receiver.answers = [500, 200, 503]  # attempt 2 is the slow one (a timeout), then 503, then 200
    receiver.slow = [0, 1.0]
    await admin_call(http, gw, "POST", f"/admin/webhooks/{sub['id']}/test")
    await receiver.wait_for(lambda r: len(r.got) == 4, timeout=15)
    assert len(receiver.counts) == 1 and all(d.verified for d in receiver.got)
    gaps = [b.at - a.at for a, b in zip(receiver.got, receiver.got[1:], strict=False)]
    # schedule 0.3, 0.9, 2.0 with +-20% jitter (plus the timed-out attempt's 0.5 s)
    assert 0.2 <= gaps[0] < 0.7 and gaps[1] > gaps[0] and gaps[2] > gaps[1], gaps
    row = await _settled(http, gw, sub["id"])
    assert row["status"] == "delivered" and row["attempts"] == 4 and row["last_status"] == 200


async def test_a_delivery_fails_when_the_schedule_is_spent_and_can_be_retried_by_hand(
        gateway_factory: GatewayFactory, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(hook_config(webhooks={"retry_schedule": [0.1]}))
    sub = await subscribe(http, gw, receiver, ["key.created"])
    receiver.answers = [500, 500, 400]
    await admin_call(http, gw, "POST", f"/admin/webhooks/{sub['id']}/test")
    await receiver.wait_for(lambda r: len(r.got) == 2)
    row = await _settled(http, gw, sub["id"])
    assert row["status"] == "failed" and row["attempts"] == 2 and row["last_status"] == 500
    # a 4xx other than 410/429 is final at once
    status, again = await admin_call(http, gw, "POST", f"/admin/webhooks/deliveries/{row['id']}/retry")
    assert status == 200 and again["status"] == "pending"
    await receiver.wait_for(lambda r: len(r.got) == 3)
    row = await _settled(http, gw, sub["id"])
    assert row["status"] == "failed" and row["attempts"] == 3 and row["last_status"] == 400
    await admin_call(http, gw, "POST", f"/admin/webhooks/deliveries/{row['id']}/retry")
    await receiver.wait_for(lambda r: len(r.got) == 4)
    row = await _settled(http, gw, sub["id"])
    assert row["status"] == "delivered" and len(receiver.counts) == 1
    status, err = await admin_call(http, gw, "POST", "/admin/webhooks/deliveries/whd_nope/retry")
    assert status == 404 and err["error"]["param"] == "delivery_id"


async def _settled(http: aiohttp.ClientSession, gw: Any, sub_id: str) -> dict[str, Any]:
    """The subscription's newest delivery once it is no longer pending."""
    for _ in range(200):
        _, deliveries = await admin_call(http, gw, "GET", f"/admin/webhooks/{sub_id}/deliveries")
        row = deliveries["data"][0]
        if row["status"] != "pending":
            return row  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery still pending: {row}")


async def _inactive(http: aiohttp.ClientSession, gw: Any, sub_id: str) -> dict[str, Any]:
    for _ in range(200):
        _, sub = await admin_call(http, gw, "GET", f"/admin/webhooks/{sub_id}")
        if not sub["active"]:
            break
        await asyncio.sleep(0.05)
    return sub  # type: ignore[no-any-return]


async def test_410_disables_the_subscription_with_an_audit_entry(
        gateway_factory: GatewayFactory, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(hook_config())
    sub = await subscribe(http, gw, receiver, ["key.created"])
    receiver.answers = [410]
    await admin_call(http, gw, "POST", f"/admin/webhooks/{sub['id']}/test")
    await receiver.wait_for(lambda r: len(r.got) == 1)
    row = await _settled(http, gw, sub["id"])
    assert row["status"] == "failed" and row["last_status"] == 410
    after = await _inactive(http, gw, sub["id"])
    assert after["active"] is False and "410" in after["disabled_reason"]
    _, audit = await admin_call(http, gw, "GET", f"/admin/audit?action=webhook.disable&target={sub['id']}")
    (entry,) = audit["data"]
    assert entry["actor"] == "gateway" and entry["after"]["active"] is False and "secret" not in str(entry)
    # nothing more reaches it
    await admin_call(http, gw, "POST", "/admin/keys", {"name": "after-410"})
    status, err = await admin_call(http, gw, "POST", f"/admin/webhooks/{sub['id']}/test")
    assert status == 409 and err["error"]["code"] == "webhook_inactive"
    await gw.gateway.webhooks.producer.flush()
    assert len(receiver.got) == 1


async def test_failing_for_disable_after_disables_the_subscription(
        gateway_factory: GatewayFactory, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(hook_config(webhooks={"retry_schedule": [0.2, 0.2, 0.2, 0.2, 0.2, 0.2],
                                                     "disable_after": 0.5}))
    sub = await subscribe(http, gw, receiver, ["key.created"])
    receiver.answers = [500] * 10
    await admin_call(http, gw, "POST", f"/admin/webhooks/{sub['id']}/test")
    after = await _inactive(http, gw, sub["id"])
    assert after["active"] is False and "every attempt failed" in after["disabled_reason"]
    _, audit = await admin_call(http, gw, "GET", f"/admin/audit?action=webhook.disable&target={sub['id']}")
    assert len(audit["data"]) == 1
    # turning it back on starts afresh
    status, again = await admin_call(http, gw, "PATCH", f"/admin/webhooks/{sub['id']}", {"active": True})
    assert status == 200 and again["active"] and again["disabled_reason"] is None and again["failing_since"] is None


async def test_inactive_and_filtered_subscriptions_receive_nothing(
        gateway_factory: GatewayFactory, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    cfg = with_key(hook_config(), team="research")
    gw = await gateway_factory(cfg)
    from tests.webhooks.conftest import Receiver as R

    inactive, other_team, other_key, control = R(), R(), R(), receiver
    # three more receivers on the same server: paths are the same, so tell them apart by subscription
    subs = {}
    for name, rec, extra in (("inactive", inactive, {"active": False}),
                             ("other_team", other_team, {"filter": {"teams": ["sales"]}}),
                             ("other_key", other_key, {"filter": {"keys": ["someone-else"]}}),
                             ("mine", control, {"filter": {"teams": ["research"], "keys": ["dev"]}})):
        rec.url = receiver.url
        subs[name] = await subscribe(http, gw, rec, ["invocation.completed"], **extra)
    await gw.openai().chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
    await receiver.wait_for(lambda r: len(r.got) == 1)
    await gw.gateway.webhooks.producer.flush()
    for name in ("inactive", "other_team", "other_key"):
        _, deliveries = await admin_call(http, gw, "GET", f"/admin/webhooks/{subs[name]['id']}/deliveries")
        assert deliveries["data"] == [], name
    _, deliveries = await admin_call(http, gw, "GET", f"/admin/webhooks/{subs['mine']['id']}/deliveries")
    assert len(deliveries["data"]) == 1
    assert len(receiver.got) == 1


async def test_rotate_secret_signs_with_both_secrets_for_the_grace_period(
        gateway_factory: GatewayFactory, receiver: Receiver, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(hook_config())
    sub = await subscribe(http, gw, receiver, ["key.created"])
    old = sub["secret"]
    status, rotated = await admin_call(http, gw, "POST", f"/admin/webhooks/{sub['id']}/rotate-secret")
    assert status == 200 and rotated["secret"].startswith("whsec_") and rotated["secret"] != old
    assert rotated["previous_expires_at"]
    new = rotated["secret"]
    await admin_call(http, gw, "POST", f"/admin/webhooks/{sub['id']}/test")
    await receiver.wait_for(lambda r: len(r.got) == 1)
    d = receiver.got[0]
    assert len(d.signature.split(" ")) == 2
    for secret in (old, new):  # a receiver holding either secret verifies it
        only = Receiver(secrets=[secret])
        assert only.verify(d.body, {"webhook-id": d.id, "webhook-timestamp": d.timestamp,
                                    "webhook-signature": d.signature})
    assert not Receiver(secrets=["whsec_" + base64.b64encode(b"x" * 32).decode()]).verify(
        d.body, {"webhook-id": d.id, "webhook-timestamp": d.timestamp, "webhook-signature": d.signature})
    _, audit = await admin_call(http, gw, "GET", "/admin/audit?action=webhook.rotate_secret")
    assert len(audit["data"]) == 1 and old not in str(audit) and new not in str(audit)
