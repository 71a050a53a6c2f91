"""Virtual keys, their last use, the admin audit log and budget alerts (mixed into `LedgerStore`).

Key records are plain dicts with JSON columns decoded. The secret's hashes never leave this module:
list/get/changed return no hash, and `find_key_by_hash` only answers "which key is this digest". A
key's signing secret leaves it only through `find_key_by_hash` (auth must verify with it); every other
record says `signing: required | off` instead.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.ledger.rows import as_utc
from proxy.ledger.schema import audit_log, budget_alerts, key_last_used, users, virtual_keys

_HASHES = frozenset({"key_sha256", "previous_sha256"})
_PUBLIC = [c for c in virtual_keys.c if c.name not in _HASHES]  # signing_secret included: _record() drops it
UPDATABLE = frozenset({"name", "models", "limits", "budget", "user", "team", "metadata", "cache", "optimize",
                       "expires_at", "disabled", "user_id"})
# what auth needs of a key's owner (find_key_by_hash): the user's limits, budget and state, as owner_*
_OWNER = [users.c.email, users.c.role, users.c.limits, users.c.budget, users.c.disabled, users.c.deleted_at]
# secrets an admin layer might pass along in an audit before/after snapshot; never persisted
_AUDIT_REDACT = frozenset({"key", "api_key", "secret", "signing_secret", "password", "password_hash", *_HASHES})
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DuplicateKeyError(ValueError):
    """Another key already has this secret."""


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def _sha(value: str) -> str:
    value = value.strip().lower()
    if not _SHA256.fullmatch(value):
        raise ValueError("key_sha256 must be 64 hex characters")
    return value


def _plain(value: Any) -> Any:
    """JSON-ready value: pydantic models (config.Limits, Budget, CachePolicy, OptimizePolicy) become dicts."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value


def _key_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"cannot set key field(s): {', '.join(sorted(unknown))}")
    out = {k: _plain(v) for k, v in fields.items()}
    if "name" in out and not (isinstance(out["name"], str) and out["name"].strip()):
        raise ValueError("name must be a non-empty string")
    if "models" in out:
        out["models"] = list(out["models"] or ["*"])
    if "metadata" in out:
        out["metadata"] = dict(out["metadata"] or {})
    if out.get("expires_at") is not None:
        out["expires_at"] = as_utc(out["expires_at"])
    if "disabled" in out:
        out["disabled"] = bool(out["disabled"])
    return out


def _record(row: Any, keep_signing_secret: bool = False) -> dict[str, Any]:
    """A key record: `signing` says whether requests must be signed; the secret itself stays here."""
    out = dict(row._mapping)
    secret = out["signing_secret"] if keep_signing_secret else out.pop("signing_secret", None)
    out["signing"] = "required" if secret else "off"
    return out


def _redact(snapshot: Any) -> Any:
    if isinstance(snapshot, Mapping):
        return {k: v for k, v in snapshot.items() if k not in _AUDIT_REDACT}
    return _plain(snapshot)


class KeysMixin:
    engine: AsyncEngine
    dialect: str
    _now: Callable[[], datetime]

    # ------------------------------------------------------------ virtual keys
    async def create_key(self, *, name: str, key_sha256: str, models: list[str] | None = None,
                         limits: Any = None, budget: Any = None, user: str | None = None,
                         team: str | None = None, metadata: Mapping[str, Any] | None = None,
                         cache: Any = None, optimize: Any = None, expires_at: datetime | str | None = None,
                         disabled: bool = False, key_id: str | None = None,
                         user_id: str | None = None, signing_secret: str | None = None) -> dict[str, Any]:
        now = self._now()
        values = _key_values({"name": name, "models": models, "limits": limits, "budget": budget,
                              "user": user, "team": team, "metadata": metadata, "cache": cache,
                              "optimize": optimize, "expires_at": expires_at, "disabled": disabled, "user_id": user_id})
        values.update(id=key_id or new_key_id(), key_sha256=_sha(key_sha256), created_at=now, updated_at=now,
                      signing_secret=signing_secret or None)
        stmt = virtual_keys.insert().values(**values).returning(*_PUBLIC)
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(stmt)).one()
        except sa.exc.IntegrityError as err:
            raise DuplicateKeyError("a key with this secret (or id) already exists") from err
        return _record(row)

    async def get_key(self, key_id: str) -> dict[str, Any] | None:
        stmt = sa.select(*_PUBLIC).where(virtual_keys.c.id == key_id, virtual_keys.c.deleted_at.is_(None))
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else _record(row)

    async def list_keys(self, *, team: str | None = None, include_disabled: bool = True,
                        user_id: str | None = None) -> list[dict[str, Any]]:
        stmt = sa.select(*_PUBLIC).where(virtual_keys.c.deleted_at.is_(None)).order_by(
            virtual_keys.c.created_at, virtual_keys.c.id)
        if team is not None:
            stmt = stmt.where(virtual_keys.c.team == team)
        if user_id is not None:
            stmt = stmt.where(virtual_keys.c.user_id == user_id)
        if not include_disabled:
            stmt = stmt.where(virtual_keys.c.disabled.is_(False))
        async with self.engine.connect() as conn:
            return [_record(r) for r in await conn.execute(stmt)]

    async def find_key_by_hash(self, sha256_hex: str) -> dict[str, Any] | None:
        """Auth lookup: the key whose current secret has this digest, or whose previous secret does while
        the rotation grace lasts. Disabled and expired keys are returned too (auth reports why it
        refuses them). `matched_previous` tells a cache to drop the entry at `previous_expires_at`. A key
        owned by a user carries that user's state as `owner_*` (None when the user is gone)."""
        try:
            digest = _sha(sha256_hex)
        except ValueError:
            return None
        k = virtual_keys.c
        matched_previous = (k.key_sha256 != digest).label("matched_previous")
        owner = [c.label(f"owner_{c.name}") for c in _OWNER]
        stmt = sa.select(*_PUBLIC, matched_previous, *owner).select_from(
            virtual_keys.outerjoin(users, users.c.id == k.user_id)).where(
            k.deleted_at.is_(None),
            sa.or_(k.key_sha256 == digest,
                   sa.and_(k.previous_sha256 == digest, k.previous_expires_at > self._now())),
        ).order_by(matched_previous).limit(1)  # a current secret wins over another key's old one
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        out = _record(row, keep_signing_secret=True)
        out["matched_previous"] = bool(out["matched_previous"])
        return out

    async def update_key(self, key_id: str, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """Change some of UPDATABLE; returns the new record, None when there is no such key."""
        values = _key_values(fields)
        values["updated_at"] = self._now()
        return await self._update(key_id, values)

    async def rotate_key(self, key_id: str, new_sha256: str,
                         grace_seconds: float = 0) -> dict[str, Any] | None:
        """Install a new secret; the old one keeps working for `grace_seconds` (0 = revoked at once)."""
        now = self._now()
        grace = grace_seconds > 0
        values = {
            # SET expressions see the row as it was, so this moves the current hash to previous
            "previous_sha256": virtual_keys.c.key_sha256 if grace else None,
            "previous_expires_at": now + timedelta(seconds=grace_seconds) if grace else None,
            "key_sha256": _sha(new_sha256),
            "updated_at": now,
        }
        try:
            return await self._update(key_id, values)
        except sa.exc.IntegrityError as err:
            raise DuplicateKeyError("a key with this secret already exists") from err

    async def delete_key(self, key_id: str) -> bool:
        """Soft delete: the row stays (with its hashes cleared) so `keys_changed_since` reports it."""
        now = self._now()
        # the unique column needs some value; this one can never equal a 64-hex digest
        values = {"deleted_at": now, "updated_at": now, "key_sha256": f"deleted:{key_id}",
                  "previous_sha256": None, "previous_expires_at": None}
        return await self._update(key_id, values) is not None

    async def keys_changed_since(self, ts: datetime | None) -> list[dict[str, Any]]:
        """Keys created, changed or deleted (`deleted_at` set) after `ts`, oldest change first.

        For replicas polling cheaply: pass the largest `updated_at` seen so far (the database's clock
        values, not the local one), None for everything. Uses the index on updated_at."""
        stmt = sa.select(*_PUBLIC).order_by(virtual_keys.c.updated_at, virtual_keys.c.id)
        if ts is not None:
            stmt = stmt.where(virtual_keys.c.updated_at > as_utc(ts))
        async with self.engine.connect() as conn:
            return [_record(r) for r in await conn.execute(stmt)]

    async def _update(self, key_id: str, values: dict[str, Any]) -> dict[str, Any] | None:
        stmt = (virtual_keys.update()
                .where(virtual_keys.c.id == key_id, virtual_keys.c.deleted_at.is_(None))
                .values(**values).returning(*_PUBLIC))
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else _record(row)

    # ------------------------------------------------------------ last use
    async def touch_keys(self, seen: Mapping[str, tuple[datetime, str | None]]) -> None:
        """Record when (and from which client IP) keys were last used: {key id: (time, ip)}. A later time
        already stored (another replica's) is kept."""
        if not seen:
            return
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(key_last_used).values([
            {"key_id": k, "last_used_at": as_utc(at), "last_used_ip": ip} for k, (at, ip) in seen.items()])
        stmt = stmt.on_conflict_do_update(
            index_elements=["key_id"],
            set_={"last_used_at": stmt.excluded.last_used_at, "last_used_ip": stmt.excluded.last_used_ip},
            where=key_last_used.c.last_used_at < stmt.excluded.last_used_at)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def last_used(self, key_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """{key id: {"last_used_at", "last_used_ip"}} for these keys (all when None)."""
        stmt = sa.select(key_last_used)
        if key_ids is not None:
            stmt = stmt.where(key_last_used.c.key_id.in_(key_ids))
        async with self.engine.connect() as conn:
            return {r.key_id: {"last_used_at": r.last_used_at, "last_used_ip": r.last_used_ip}
                    for r in await conn.execute(stmt)}

    # ------------------------------------------------------------ audit log
    async def add_audit(self, actor: str, action: str, target: str | None = None, before: Any = None,
                        after: Any = None, *, ip: str | None = None) -> dict[str, Any]:
        stmt = audit_log.insert().values(at=self._now(), actor=actor, action=action, target=target,
                                         before=_redact(before), after=_redact(after), ip=ip).returning(*audit_log.c)
        async with self.engine.begin() as conn:
            return dict((await conn.execute(stmt)).one()._mapping)

    async def list_audit(self, limit: int = 100, since: datetime | None = None, *, target: str | None = None,
                         action: str | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        stmt = sa.select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(audit_log.c.at >= as_utc(since))
        if target is not None:
            stmt = stmt.where(audit_log.c.target == target)
        if action is not None:
            stmt = stmt.where(audit_log.c.action == action)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    # ------------------------------------------------------------ budget alerts
    async def record_budget_alert(self, scope: str, name: str, period_start: datetime, threshold: float,
                                  spend_usd: float, limit_usd: float) -> bool:
        """True when this is the first alert for (scope, name, period_start, threshold); False when it
        was already recorded (by this or another replica), so the caller does not notify twice."""
        if scope not in ("key", "team", "user"):
            raise ValueError(f"scope must be 'key', 'team' or 'user', not {scope!r}")
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(budget_alerts).values(
            at=self._now(), scope=scope, name=name, period_start=as_utc(period_start),
            threshold=float(threshold), spend_usd=float(spend_usd), limit_usd=float(limit_usd),
        ).on_conflict_do_nothing(index_elements=["scope", "name", "period_start", "threshold"])
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def list_budget_alerts(self, *, scope: str | None = None, name: str | None = None,
                                 since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        b = budget_alerts.c
        stmt = sa.select(budget_alerts).order_by(b.at.desc(), b.id.desc()).limit(limit)
        if scope is not None:
            stmt = stmt.where(b.scope == scope)
        if name is not None:
            stmt = stmt.where(b.name == name)
        if since is not None:
            stmt = stmt.where(b.at >= as_utc(since))
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]
