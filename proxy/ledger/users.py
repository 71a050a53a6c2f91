"""Console users and their sign-in sessions (mixed into `LedgerStore`).

User records are plain dicts without the password hash (`password_hash` only leaves through
`user_credentials`, for sign-in). Deletion is soft, like keys: the row stays (so pollers learn of it),
its e-mail is rewritten so the address can be given to a new user. Sessions are stored by the SHA-256 of
their token (the token itself lives only in the browser's cookie).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.ledger.keys import _plain
from proxy.ledger.schema import console_sessions, users, virtual_keys

_PUBLIC = [c for c in users.c if c.name != "password_hash"]
USER_UPDATABLE = frozenset({"email", "name", "team", "role", "password_hash", "limits", "budget", "disabled"})


class DuplicateEmailError(ValueError):
    """Another user already has this e-mail address."""


def new_user_id() -> str:
    return "usr_" + secrets.token_hex(8)


def _public(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["has_password"] = bool(out["has_password"])
    return out


def _user_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - USER_UPDATABLE
    if unknown:
        raise ValueError(f"cannot set user field(s): {', '.join(sorted(unknown))}")
    out = {k: _plain(v) for k, v in fields.items()}
    if "email" in out:
        out["email"] = str(out["email"]).strip().lower()
    if "disabled" in out:
        out["disabled"] = bool(out["disabled"])
    return out


class UsersMixin:
    engine: AsyncEngine
    dialect: str
    _now: Callable[[], datetime]

    # ------------------------------------------------------------ users
    def _user_select(self) -> sa.Select[Any]:
        has_password = users.c.password_hash.is_not(None).label("has_password")
        return sa.select(*_PUBLIC, has_password).where(users.c.deleted_at.is_(None))

    async def create_user(self, *, email: str, name: str, role: str, team: str | None = None,
                          password_hash: str | None = None, limits: Any = None, budget: Any = None,
                          disabled: bool = False, source: str = "db", user_id: str | None = None) -> dict[str, Any]:
        now = self._now()
        values = _user_values({"email": email, "name": name, "role": role, "team": team,
                               "password_hash": password_hash, "limits": limits, "budget": budget,
                               "disabled": disabled})
        values.update(id=user_id or new_user_id(), source=source, created_at=now, updated_at=now)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(users.insert().values(**values))
        except sa.exc.IntegrityError as err:
            raise DuplicateEmailError(f"a user with e-mail {values['email']!r} already exists") from err
        found = await self.get_user(values["id"])
        assert found is not None
        return found

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(self._user_select().where(users.c.id == user_id))).one_or_none()
        return None if row is None else _public(row)

    async def find_user_by_email(self, email: str) -> dict[str, Any] | None:
        stmt = self._user_select().where(users.c.email == email.strip().lower())
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else _public(row)

    async def list_users(self, *, team: str | None = None) -> list[dict[str, Any]]:
        stmt = self._user_select().order_by(users.c.created_at, users.c.id)
        if team is not None:
            stmt = stmt.where(users.c.team == team)
        async with self.engine.connect() as conn:
            return [_public(r) for r in await conn.execute(stmt)]

    async def user_credentials(self, email: str) -> dict[str, Any] | None:
        """Sign-in only: the user with this e-mail, with its password hash (None when there is none)."""
        stmt = sa.select(users).where(users.c.email == email.strip().lower(), users.c.deleted_at.is_(None))
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        return None if row is None else dict(row._mapping)

    async def update_user(self, user_id: str, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        values = _user_values(fields)
        values["updated_at"] = self._now()
        stmt = users.update().where(users.c.id == user_id, users.c.deleted_at.is_(None)).values(**values)
        try:
            async with self.engine.begin() as conn:
                if (await conn.execute(stmt)).rowcount == 0:
                    return None
        except sa.exc.IntegrityError as err:
            raise DuplicateEmailError(f"a user with e-mail {values.get('email')!r} already exists") from err
        return await self.get_user(user_id)

    async def delete_user(self, user_id: str) -> bool:
        now = self._now()
        stmt = users.update().where(users.c.id == user_id, users.c.deleted_at.is_(None)).values(
            deleted_at=now, updated_at=now, email=f"deleted:{user_id}:" + users.c.email, password_hash=None)
        async with self.engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def sync_config_users(self, records: list[dict[str, Any]]) -> None:
        """Make the `source=config` users exactly `records` (gateway.yaml's `users:`), on every start: insert
        or update them, soft-delete the config users no longer declared. Replicas racing here write the same."""
        now = self._now()
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        ids = [r["id"] for r in records]
        async with self.engine.begin() as conn:
            for r in records:
                values = {**_user_values({k: v for k, v in r.items() if k in USER_UPDATABLE}),
                          "id": r["id"], "source": "config", "deleted_at": None, "updated_at": now}
                stmt = insert(users).values(**values, created_at=now)
                update = {k: stmt.excluded[k] for k in values if k != "id"}
                await conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=update))
            gone = users.update().where(users.c.source == "config", users.c.deleted_at.is_(None))
            if ids:
                gone = gone.where(users.c.id.not_in(ids))
            await conn.execute(gone.values(deleted_at=now, updated_at=now,
                                           email=sa.literal("deleted:") + users.c.id + ":" + users.c.email))

    async def touch_user_keys(self, user_id: str) -> list[str]:
        """Mark every key of a user changed (their cached auth carries the user's limits and state): replicas
        polling `keys_changed_since` reload them. Returns their ids."""
        k = virtual_keys.c
        stmt = (virtual_keys.update().where(k.user_id == user_id, k.deleted_at.is_(None))
                .values(updated_at=self._now()).returning(k.id))
        async with self.engine.begin() as conn:
            return [r[0] for r in await conn.execute(stmt)]

    async def user_key_digest(self, user_id: str) -> str | None:
        """The digest of the user's oldest usable key (a console session acts with it), None without one."""
        k = virtual_keys.c
        stmt = (sa.select(k.key_sha256).where(k.user_id == user_id, k.deleted_at.is_(None), k.disabled.is_(False),
                                              sa.or_(k.expires_at.is_(None), k.expires_at > self._now()))
                .order_by(k.created_at, k.id).limit(1))
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).scalar_one_or_none()

    # ------------------------------------------------------------ sessions
    async def create_session(self, session_id: str, *, kind: str, subject: Mapping[str, Any], expires_at: datetime,
                             user_id: str | None = None, key_sha256: str | None = None,
                             ip: str | None = None) -> None:
        stmt = console_sessions.insert().values(id=session_id, kind=kind, user_id=user_id, subject=dict(subject),
                                                key_sha256=key_sha256, ip=ip, created_at=self._now(),
                                                expires_at=expires_at)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        """A live session (not revoked, not expired), with its user's current state when it has one
        (`user` None: the user was deleted)."""
        s, u = console_sessions.c, users.c
        user_cols = [u.email, u.name, u.team, u.role, u.disabled, u.deleted_at]
        stmt = (sa.select(*console_sessions.c, *(c.label(f"user_{c.name}") for c in user_cols))
                .select_from(console_sessions.outerjoin(users, users.c.id == s.user_id))
                .where(s.id == session_id, s.revoked_at.is_(None), s.expires_at > self._now()))
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            return None
        out = dict(row._mapping)
        user = {c.name: out.pop(f"user_{c.name}") for c in user_cols}
        out["user"] = user if out["user_id"] and user["deleted_at"] is None and user["email"] else None
        return out

    async def revoke_session(self, session_id: str) -> bool:
        c = console_sessions.c
        stmt = console_sessions.update().where(c.id == session_id, c.revoked_at.is_(None)).values(
            revoked_at=self._now())
        async with self.engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def revoke_user_sessions(self, user_id: str) -> list[str]:
        c = console_sessions.c
        stmt = (console_sessions.update().where(c.user_id == user_id, c.revoked_at.is_(None))
                .values(revoked_at=self._now()).returning(c.id))
        async with self.engine.begin() as conn:
            return [r[0] for r in await conn.execute(stmt)]

    async def purge_sessions(self, before: datetime) -> int:
        """Drop sessions that expired (or were revoked) before `before`: the table stays small."""
        c = console_sessions.c
        stmt = console_sessions.delete().where(sa.or_(c.expires_at < before, c.revoked_at < before))
        async with self.engine.begin() as conn:
            return int((await conn.execute(stmt)).rowcount or 0)
