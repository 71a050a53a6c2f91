"""Console users at runtime: POST/GET /admin/users, GET/PATCH/DELETE /admin/users/{id}.

A user is `{email, name, team, role: admin|member|viewer, password?, limits?, budget?}`; keys belong to a
user through their `user_id`, and the user's limits and budget apply across all of them. A password is
stored only as its Argon2id hash and never returned (`has_password` says whether there is one). Users from
gateway.yaml (`users:`) are listed too, read-only. Disabling or deleting a user, or changing their password,
revokes their console sessions; any change reaches the cached auth of their keys on every replica.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StringConstraints, field_validator

from proxy.config.access import Role
from proxy.config.base import Budget, Limits
from proxy.core.errors import NOT_FOUND, GatewayError
from proxy.core.strict import Strict
from proxy.gateway import GATEWAY
from proxy.http.admin.audit import actor, body_as, database, json_response, record, unprocessable
from proxy.http.admin.keys import _check_refs
from proxy.ledger import DuplicateEmailError
from proxy.users.passwords import MAX_LENGTH, MIN_LENGTH, hash_password

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=3, max_length=254)]
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
Password = Annotated[str, Field(min_length=MIN_LENGTH, max_length=MAX_LENGTH)]


def _email(v: str | None) -> str | None:
    if v is not None and not _EMAIL.fullmatch(v):
        raise ValueError("must be an e-mail address like name@example.com")
    return v


class UserFields(Strict):
    team: Text | None = None
    password: Password | None = None
    limits: Limits | None = None
    budget: Budget | None = None
    disabled: bool | None = None


class UserCreate(UserFields):
    email: Email
    name: Text
    role: Role = "member"

    _valid_email = field_validator("email")(_email)


class UserUpdate(UserFields):
    email: Email | None = None
    name: Text | None = None
    role: Role | None = None

    _valid_email = field_validator("email")(_email)


def public(row: dict[str, Any]) -> dict[str, Any]:
    out = {"object": "gateway.user", **row}
    if row.get("source") == "config":
        out["read_only"] = True
    return out


def not_found(user_id: str) -> GatewayError:
    return GatewayError(404, f"No user with id {user_id!r}.", NOT_FOUND, code="user_not_found", param="id")


def duplicate(email: str | None) -> GatewayError:
    return GatewayError(409, f"A user with e-mail {email!r} already exists.", code="duplicate_email", param="email")


async def _existing(request: web.Request, user_id: str, *, writable: bool = False) -> dict[str, Any]:
    row = await database(request).ledger_store.get_user(user_id)
    if row is None:
        raise not_found(user_id)
    if writable and row["source"] == "config":
        raise GatewayError(409, f"User {user_id!r} is defined in gateway.yaml; change it there.",
                           code="read_only_user", param="id")
    return row


async def user_changed(request: web.Request, user_id: str, *, revoke: bool) -> None:
    """Every replica reloads the user's keys (their auth carries the user's limits and state) and sessions;
    `revoke` ends the user's console sessions."""
    gw = request.app[GATEWAY]
    for key_id in await gw.ledger_store.touch_user_keys(user_id):
        await gw.keystore.changed(key_id)
    if revoke:
        await gw.users.sessions.revoke_user(user_id)
    else:
        await gw.users.sessions.user_changed(user_id)


async def create_user(request: web.Request) -> web.Response:
    who = await actor(request)
    body = await body_as(request, UserCreate)
    _check_refs(request.app[GATEWAY].cfg, body)  # type: ignore[arg-type]
    store = database(request).ledger_store
    pw = await asyncio.to_thread(hash_password, body.password) if body.password else None
    try:
        row = await store.create_user(email=body.email, name=body.name, role=body.role, team=body.team,
                                      password_hash=pw, limits=body.limits, budget=body.budget,
                                      disabled=bool(body.disabled))
    except DuplicateEmailError:
        raise duplicate(body.email) from None
    await record(request, who, "user.create", row["id"], after=row)
    return json_response(public(row), status=201)


async def list_users(request: web.Request) -> web.Response:
    await actor(request)
    rows = await database(request).ledger_store.list_users(team=request.query.get("team") or None)
    return json_response({"object": "list", "data": [public(r) for r in rows]})


async def get_user(request: web.Request) -> web.Response:
    await actor(request)
    return json_response(public(await _existing(request, request.match_info["user_id"])))


async def update_user(request: web.Request) -> web.Response:
    who = await actor(request)
    user_id = request.match_info["user_id"]
    body = await body_as(request, UserUpdate)
    fields: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    if not fields:
        raise unprocessable("body", "give at least one field to change")
    for name in ("email", "name", "role", "disabled", "password"):
        if name in fields and fields[name] is None:
            raise unprocessable(name, "cannot be null")
    _check_refs(request.app[GATEWAY].cfg, body)  # type: ignore[arg-type]
    before = await _existing(request, user_id, writable=True)
    new_password = "password" in fields
    if new_password:
        fields["password_hash"] = await asyncio.to_thread(hash_password, fields.pop("password"))
    try:
        after = await database(request).ledger_store.update_user(user_id, fields)
    except DuplicateEmailError:
        raise duplicate(fields.get("email")) from None
    if after is None:
        raise not_found(user_id)
    await record(request, who, "user.update", user_id, before=before,
                 after={**after, **({"password_changed": True} if new_password else {})})
    if before.get("budget") != after.get("budget"):
        await record(request, who, "budget.update", user_id, before={"budget": before.get("budget")},
                     after={"budget": after.get("budget")})
    await user_changed(request, user_id, revoke=new_password or bool(after["disabled"]))
    return json_response(public(after))


async def delete_user(request: web.Request) -> web.Response:
    who = await actor(request)
    user_id = request.match_info["user_id"]
    before = await _existing(request, user_id, writable=True)
    if not await database(request).ledger_store.delete_user(user_id):
        raise not_found(user_id)
    await record(request, who, "user.delete", user_id, before=before)
    await user_changed(request, user_id, revoke=True)  # their keys stop working with them
    return json_response({"object": "gateway.user.deleted", "id": user_id, "deleted": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/admin/users", create_user)
    r.add_get("/admin/users", list_users)
    r.add_get("/admin/users/{user_id}", get_user)
    r.add_patch("/admin/users/{user_id}", update_user)
    r.add_delete("/admin/users/{user_id}", delete_user)
