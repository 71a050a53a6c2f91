"""Webhook subscriptions at runtime: POST/GET /admin/webhooks, GET/PATCH/DELETE /admin/webhooks/{id},
POST .../rotate-secret, POST .../test, GET .../deliveries, POST /admin/webhooks/deliveries/{id}/retry.

The signing secret (`whsec_...`) is returned exactly once, by create and rotate-secret; after a rotation
the previous secret keeps signing alongside the new one for `webhooks.rotation_grace` (24 h). Subscriptions
from gateway.yaml are listed too (`source: config`, read-only). Every change is audited (never a secret).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, field_validator

from proxy.config.webhooks import Filter, SubscriptionFields, check_events, check_url
from proxy.core.errors import NOT_FOUND, GatewayError
from proxy.core.strict import Strict
from proxy.gateway import Gateway
from proxy.http.admin.audit import actor, body_as, database, json_response, query_int, record, unprocessable
from proxy.webhooks.signing import new_secret
from proxy.webhooks.store import DELIVERED, FAILED, PENDING, public
from proxy.webhooks.targets import url_refusal


class SubscriptionUpdate(Strict):
    url: str | None = Field(None, max_length=2048)
    events: list[str] | None = None
    active: bool | None = None
    description: str | None = Field(None, max_length=1000)
    filter: Filter | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else check_url(v)

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else check_events(v)

    def checked(self) -> dict[str, Any]:
        fields = self.model_dump(mode="json", include=self.model_fields_set)
        if not fields:
            raise unprocessable("body", "give at least one field to change")
        for name in ("url", "events", "active"):
            if name in fields and fields[name] is None:
                raise unprocessable(name, "cannot be null")
        return fields


def subscription_record(row: dict[str, Any]) -> dict[str, Any]:
    out = {"object": "gateway.webhook", **public(row)}
    out["read_only"] = row.get("source") == "config"
    return out


def delivery_record(row: dict[str, Any]) -> dict[str, Any]:
    out = {"object": "gateway.webhook.delivery"}
    out.update({k: v for k, v in row.items() if k not in ("body", "lease_until", "step")})
    out["in_flight"] = row.get("lease_until") is not None and row.get("status") == PENDING
    return out


def not_found(sub_id: str) -> GatewayError:
    return GatewayError(404, f"No webhook subscription with id {sub_id!r}.", NOT_FOUND, code="webhook_not_found",
                        param="id")


def _read_only(sub_id: str) -> GatewayError:
    return GatewayError(409, f"Webhook {sub_id!r} is defined in gateway.yaml; change it there.",
                        code="read_only_webhook", param="id")


async def _safe_target(gw: Gateway, url: str) -> None:
    if not gw.cfg.webhooks.allow_private_targets and (why := await url_refusal(url)) is not None:
        raise unprocessable("url", f"{why}; private, loopback and link-local targets are refused unless "
                                   "webhooks.allow_private_targets is true")


async def _subscription(request: web.Request) -> tuple[Gateway, dict[str, Any]]:
    gw = database(request)
    sub_id = request.match_info["sub_id"]
    row = await gw.webhooks.store.get_subscription(sub_id)
    if row is None:
        raise not_found(sub_id)
    return gw, row


async def create_webhook(request: web.Request) -> web.Response:
    who = await actor(request)
    body = await body_as(request, SubscriptionFields)
    gw = database(request)
    await _safe_target(gw, body.url)
    fields = body.model_dump(mode="json")
    secret = new_secret()
    row = await gw.webhooks.store.create_subscription(fields, secret)
    await record(request, who, "webhook.create", row["id"], after=public(row))
    await gw.webhooks.changed()
    return json_response({**subscription_record(row), "secret": secret}, status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    await actor(request)
    rows = await database(request).webhooks.store.all_subscriptions()
    return json_response({"object": "list", "data": [subscription_record(r) for r in rows]})


async def get_webhook(request: web.Request) -> web.Response:
    await actor(request)
    _, row = await _subscription(request)
    return json_response(subscription_record(row))


async def update_webhook(request: web.Request) -> web.Response:
    who = await actor(request)
    fields = (await body_as(request, SubscriptionUpdate)).checked()
    gw, before = await _subscription(request)
    if before["source"] == "config":
        raise _read_only(before["id"])
    if "url" in fields:
        await _safe_target(gw, fields["url"])
    after = await gw.webhooks.store.update_subscription(before["id"], fields)
    if after is None:  # deleted meanwhile
        raise not_found(before["id"])
    await record(request, who, "webhook.update", before["id"], before=public(before), after=public(after))
    await gw.webhooks.changed()
    return json_response(subscription_record(after))


async def delete_webhook(request: web.Request) -> web.Response:
    who = await actor(request)
    gw, before = await _subscription(request)
    if before["source"] == "config":
        raise _read_only(before["id"])
    if not await gw.webhooks.store.delete_subscription(before["id"]):
        raise not_found(before["id"])
    await record(request, who, "webhook.delete", before["id"], before=public(before))
    await gw.webhooks.changed()
    return json_response({"object": "gateway.webhook.deleted", "id": before["id"], "deleted": True})


async def rotate_secret(request: web.Request) -> web.Response:
    who = await actor(request)
    gw, before = await _subscription(request)
    if before["source"] == "config":
        raise _read_only(before["id"])
    secret = new_secret()
    after = await gw.webhooks.store.rotate_secret(before["id"], secret, gw.cfg.webhooks.rotation_grace)
    if after is None:
        raise not_found(before["id"])
    await record(request, who, "webhook.rotate_secret", before["id"], before=public(before), after=public(after))
    await gw.webhooks.changed()
    return json_response({**subscription_record(after), "secret": secret})


async def test_webhook(request: web.Request) -> web.Response:
    who = await actor(request)
    gw, row = await _subscription(request)
    if not row["active"]:
        raise GatewayError(409, f"Webhook {row['id']!r} is inactive; activate it first.", code="webhook_inactive",
                           param="id")
    delivery = await gw.webhooks.send_test(row["id"])
    await record(request, who, "webhook.test", row["id"], after={"delivery_id": delivery["id"]})
    return json_response(delivery_record(delivery), status=202)


async def list_deliveries(request: web.Request) -> web.Response:
    await actor(request)
    gw, row = await _subscription(request)
    status = request.query.get("status") or None
    if status is not None and status not in (PENDING, DELIVERED, FAILED):
        raise unprocessable("status", f"one of {PENDING}, {DELIVERED}, {FAILED}")
    rows = await gw.webhooks.store.list_deliveries(row["id"], query_int(request, "limit", 100, 1, 1000), status)
    return json_response({"object": "list", "data": [delivery_record(r) for r in rows]})


async def retry_delivery(request: web.Request) -> web.Response:
    who = await actor(request)
    gw = database(request)
    delivery_id = request.match_info["delivery_id"]
    row = await gw.webhooks.store.retry_delivery(delivery_id)
    if row is None:
        raise GatewayError(404, f"No webhook delivery with id {delivery_id!r}.", NOT_FOUND,
                           code="delivery_not_found", param="delivery_id")
    await record(request, who, "webhook.retry", row["subscription_id"], after={"delivery_id": delivery_id})
    gw.webhooks.wake()
    return json_response(delivery_record(row))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/admin/webhooks", create_webhook)
    r.add_get("/admin/webhooks", list_webhooks)
    r.add_post("/admin/webhooks/deliveries/{delivery_id}/retry", retry_delivery)
    r.add_get("/admin/webhooks/{sub_id}", get_webhook)
    r.add_patch("/admin/webhooks/{sub_id}", update_webhook)
    r.add_delete("/admin/webhooks/{sub_id}", delete_webhook)
    r.add_post("/admin/webhooks/{sub_id}/rotate-secret", rotate_secret)
    r.add_post("/admin/webhooks/{sub_id}/test", test_webhook)
    r.add_get("/admin/webhooks/{sub_id}/deliveries", list_deliveries)
