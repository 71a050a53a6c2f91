"""Virtual keys at runtime: POST/GET /admin/keys, GET/PATCH/DELETE /admin/keys/{id}, POST .../rotate.

A new secret is returned exactly once (`key` in the create/rotate answer); only its SHA-256 is stored and
no endpoint returns either again. A key created with `"signing": "required"` also gets a signing secret
(`signing_secret` in the create answer, once; stored as is because HMAC verification needs it, never
returned, logged or audited afterwards). Keys from gateway.yaml are listed too (`source: config`,
read-only). Every record shows `last_used_at` / `last_used_ip` (auth/lastused.py). Every change is
audited, and reaches every replica's key cache at once (KeyStore.changed).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from pydantic import Field, StringConstraints, field_validator

from proxy.config import GatewayConfig
from proxy.config.access import KeyConfig
from proxy.config.agents import OptimizePolicy
from proxy.config.base import Budget, CachePolicy, Limits
from proxy.core.errors import NOT_FOUND, GatewayError
from proxy.core.identity import sha256_hex
from proxy.core.strict import Strict
from proxy.gateway import GATEWAY
from proxy.http.admin.audit import actor, body_as, database, json_response, record, unprocessable
from proxy.ledger import DuplicateKeyError

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
MAX_METADATA_BYTES = 16 * 1024
MAX_GRACE_SECONDS = 30 * 86400


class KeyFields(Strict):
    models: list[Text] | None = Field(None, max_length=1000)
    limits: Limits | None = None
    budget: Budget | None = None
    user: Text | None = None
    team: Text | None = None
    metadata: dict[str, Any] | None = None
    expires_at: datetime | None = None
    cache: CachePolicy | None = None
    optimize: OptimizePolicy | None = None  # prompt optimisation for this key's calls
    user_id: Text | None = None  # the console user the key belongs to (their limits and budget apply)

    @field_validator("metadata")
    @classmethod
    def _small(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and len(orjson.dumps(v)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is limited to {MAX_METADATA_BYTES} bytes of JSON")
        return v

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v


def _name(v: str | None) -> str | None:
    # ids and names are both accepted wherever a key is named (usage filters): a name must not pose as an id
    if v is not None and (v.startswith("cfg:") or re.fullmatch(r"key_[0-9a-f]{16}", v)):
        raise ValueError("a key name cannot look like a key id (cfg:... or key_<16 hex>)")
    return v


class KeyCreate(KeyFields):
    name: Text
    signing: Literal["off", "required"] = "off"

    _valid_name = field_validator("name")(_name)


class KeyUpdate(KeyFields):
    name: Text | None = None
    disabled: bool | None = None

    _valid_name = field_validator("name")(_name)


class Rotate(Strict):
    grace_seconds: float = Field(0, ge=0, le=MAX_GRACE_SECONDS)


def _check_refs(cfg: GatewayConfig, body: KeyFields) -> None:
    """Per-provider / per-alias limits must name things that exist: a typo would silently limit nothing."""
    if body.limits is None:
        return
    for p in body.limits.per_provider:
        if p not in cfg.providers:
            raise unprocessable(f"limits.per_provider.{p}", f"unknown provider {p!r}")
    for a in body.limits.per_alias:
        if a not in cfg.models:
            raise unprocessable(f"limits.per_alias.{a}", f"unknown model alias {a!r}")


def _check_optimize(cfg: GatewayConfig, policy: OptimizePolicy | None) -> None:
    """A rewrite's `via` must be an alias, as gateway.yaml's keys are checked: a typo would fail every rewrite."""
    if policy is not None and policy.via is not None and policy.via not in cfg.models:
        raise unprocessable("optimize.via", f"unknown alias {policy.via!r}")


def new_secret() -> str:
    # `sk-gw-` makes leaked keys recognisable to secret scanners (a fixed prefix + 43 base64url characters)
    return "sk-gw-" + secrets.token_urlsafe(32)


def new_signing_secret() -> str:
    return "gws-" + secrets.token_urlsafe(32)


_NEVER = frozenset(("key_sha256", "previous_sha256", "matched_previous", "signing_secret"))
_NOT_USED = {"last_used_at": None, "last_used_ip": None}


def public(row: dict[str, Any], used: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {"object": "gateway.key", "source": "db"}
    out.update({k: v for k, v in row.items() if k not in _NEVER})
    if used is not None:
        out.update(used.get(row["id"], _NOT_USED))
    return out


def config_record(k: KeyConfig, used: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    key_id = f"cfg:{k.name}"
    return {"object": "gateway.key", "source": "config", "read_only": True, "id": key_id, "name": k.name,
            "models": k.models, "limits": k.limits, "budget": k.budget, "user": k.user, "team": k.team,
            "metadata": k.metadata, "expires_at": k.expires_at, "cache": k.cache, "optimize": k.optimize,
            "disabled": False, "user_id": k.user_id, "signing": k.signing, **(used or {}).get(key_id, _NOT_USED)}


def key_event(request: web.Request, kind: str, row: dict[str, Any], **extra: Any) -> None:
    """key.created / key.rotated / key.revoked on the gateway's event bus (webhooks); never the secret."""
    who = {f: row.get(f) for f in ("id", "name", "user", "team")}
    request.app[GATEWAY].events.emit({"type": kind, "key": who, **extra})


def not_found(key_id: str) -> GatewayError:
    return GatewayError(404, f"No key with id {key_id!r}.", NOT_FOUND, code="key_not_found", param="id")


def _config_key(cfg: GatewayConfig, key_id: str) -> KeyConfig | None:
    if not key_id.startswith("cfg:"):
        return None
    return next((k for k in cfg.keys if k.name == key_id[4:]), None)


def _read_only(key_id: str) -> GatewayError:
    return GatewayError(409, f"Key {key_id!r} is defined in gateway.yaml; change it there.", code="read_only_key",
                        param="id")


async def _name_taken(request: web.Request, name: str, except_id: str | None = None) -> None:
    cfg = request.app[GATEWAY].cfg
    rows = await database(request).ledger_store.list_keys()
    if any(k.name == name for k in cfg.keys) or any(r["name"] == name and r["id"] != except_id for r in rows):
        raise GatewayError(409, f"A key named {name!r} already exists.", code="duplicate_key_name", param="name")


async def _owner(request: web.Request, user_id: str | None) -> dict[str, Any] | None:
    """The user a key is given to: 422 naming `user_id` when there is no such user."""
    if user_id is None:
        return None
    user = await database(request).ledger_store.get_user(user_id)
    if user is None:
        raise unprocessable("user_id", f"no user with id {user_id!r}")
    return user


async def create_key(request: web.Request) -> web.Response:
    who = await actor(request)
    body = await body_as(request, KeyCreate)
    cfg = request.app[GATEWAY].cfg
    _check_refs(cfg, body)
    _check_optimize(cfg, body.optimize)
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise unprocessable("expires_at", "must be in the future")
    store = database(request).ledger_store
    owner = await _owner(request, body.user_id)
    await _name_taken(request, body.name)
    secret = new_secret()
    team = body.team if body.team is not None or owner is None else owner.get("team")
    signing_secret = new_signing_secret() if body.signing == "required" else None
    try:
        row = await store.create_key(name=body.name, key_sha256=sha256_hex(secret), models=body.models or ["*"],
                                     limits=body.limits, budget=body.budget, user=body.user, team=team,
                                     metadata=body.metadata or {}, cache=body.cache, optimize=body.optimize,
                                     expires_at=body.expires_at, user_id=body.user_id, signing_secret=signing_secret)
    except DuplicateKeyError:  # a 256-bit collision: practically never, but never store it twice
        raise GatewayError(409, "Key generation collided; retry.", code="duplicate_key") from None
    await record(request, who, "key.create", row["id"], after=row)
    await database(request).keystore.changed(row["id"])  # clears "unknown key" answers cached anywhere
    shown_once = {"key": secret, **({"signing_secret": signing_secret} if signing_secret else {})}
    key_event(request, "key.created", row, models=row.get("models"), expires_at=row.get("expires_at"))
    return json_response({**public(row, {}), **shown_once}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    await actor(request)
    cfg = request.app[GATEWAY].cfg
    team = request.query.get("team") or None
    store = database(request).ledger_store
    rows = await store.list_keys(team=team)
    used = await store.last_used()
    data = [] if request.query.get("source") == "db" else [
        config_record(k, used) for k in cfg.keys if team is None or k.team == team]
    data += [public(r, used) for r in rows]
    return json_response({"object": "list", "data": data})


async def get_key(request: web.Request) -> web.Response:
    await actor(request)
    key_id = request.match_info["key_id"]
    gw = request.app[GATEWAY]
    if (ck := _config_key(gw.cfg, key_id)) is not None:  # served without the database too (no last use then)
        return json_response(config_record(ck, await gw.ledger_store.last_used([key_id]) if gw.ledger.ready else {}))
    store = database(request).ledger_store
    used = await store.last_used([key_id])
    row = await store.get_key(key_id)
    if row is None:
        raise not_found(key_id)
    return json_response(public(row, used))


async def update_key(request: web.Request) -> web.Response:
    who = await actor(request)
    key_id = request.match_info["key_id"]
    body = await body_as(request, KeyUpdate)
    cfg = request.app[GATEWAY].cfg
    if _config_key(cfg, key_id) is not None:
        raise _read_only(key_id)
    fields = {name: getattr(body, name) for name in body.model_fields_set}
    if not fields:
        raise unprocessable("body", "give at least one field to change")
    for name in ("name", "disabled"):
        if name in fields and fields[name] is None:
            raise unprocessable(name, "cannot be null")
    _check_refs(cfg, body)
    _check_optimize(cfg, body.optimize)
    if fields.get("user_id") is not None:
        await _owner(request, fields["user_id"])
    store = database(request).ledger_store
    before = await store.get_key(key_id)
    if before is None:
        raise not_found(key_id)
    if "name" in fields and fields["name"] != before["name"]:
        await _name_taken(request, fields["name"], except_id=key_id)
    after = await store.update_key(key_id, fields)
    if after is None:  # deleted meanwhile
        raise not_found(key_id)
    await record(request, who, "key.update", key_id, before=before, after=after)
    if before.get("budget") != after.get("budget"):  # its own entry too: `?action=budget.update` finds them all
        await record(request, who, "budget.update", key_id, before={"budget": before.get("budget")},
                     after={"budget": after.get("budget")})
    await database(request).keystore.changed(key_id)
    if after.get("disabled") and not before.get("disabled"):
        key_event(request, "key.revoked", after, reason="disabled")
    return json_response(public(after))


async def delete_key(request: web.Request) -> web.Response:
    who = await actor(request)
    key_id = request.match_info["key_id"]
    if _config_key(request.app[GATEWAY].cfg, key_id) is not None:
        raise _read_only(key_id)
    store = database(request).ledger_store
    before = await store.get_key(key_id)
    if before is None or not await store.delete_key(key_id):
        raise not_found(key_id)
    await record(request, who, "key.delete", key_id, before=before)
    await database(request).keystore.changed(key_id)
    key_event(request, "key.revoked", before, reason="deleted")
    return json_response({"object": "gateway.key.deleted", "id": key_id, "deleted": True})


async def rotate_key(request: web.Request) -> web.Response:
    who = await actor(request)
    key_id = request.match_info["key_id"]
    body = await body_as(request, Rotate) if request.can_read_body else Rotate()
    if _config_key(request.app[GATEWAY].cfg, key_id) is not None:
        raise _read_only(key_id)
    store = database(request).ledger_store
    before = await store.get_key(key_id)
    if before is None:
        raise not_found(key_id)
    secret = new_secret()
    try:
        after = await store.rotate_key(key_id, sha256_hex(secret), body.grace_seconds)
    except DuplicateKeyError:
        raise GatewayError(409, "Key generation collided; retry.", code="duplicate_key") from None
    if after is None:
        raise not_found(key_id)
    await record(request, who, "key.rotate", key_id, before=before,
                 after={**after, "grace_seconds": body.grace_seconds})
    await database(request).keystore.changed(key_id)
    key_event(request, "key.rotated", after, grace_seconds=body.grace_seconds,
              previous_expires_at=after.get("previous_expires_at"))
    return json_response({**public(after), "key": secret, "grace_seconds": body.grace_seconds})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/admin/keys", create_key)
    r.add_get("/admin/keys", list_keys)
    r.add_get("/admin/keys/{key_id}", get_key)
    r.add_patch("/admin/keys/{key_id}", update_key)
    r.add_delete("/admin/keys/{key_id}", delete_key)
    r.add_post("/admin/keys/{key_id}/rotate", rotate_key)
