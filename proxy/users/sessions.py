"""Console sign-in sessions: durable in the ledger database (every replica sees them), cached in-process.

The browser holds an opaque random token in the `gw_session` cookie; the database holds only its SHA-256
(the session id). The CSRF token is an HMAC of the cookie's token: a page that can read the token (the
console, from the sign-in answer) can send it, a cross-site form cannot; nothing extra is stored.

A resolved session is cached for `ttl` (30 s with Redis, 2 s without). Revocation, like key changes
(auth/keystore.py), reaches every replica at once through Redis pub/sub (`gw:sessions`: a session id,
`user:<id>` for all of a user's sessions, `*` for all); without Redis within the short cache lifetime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.infra.redis_client import RedisClient
    from proxy.ledger import LedgerStore

COOKIE = "gw_session"
CHANNEL = "gw:sessions"
KINDS = ("password", "api_key", "admin_key")


def session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    mac = hmac.new(token.encode(), b"gw-console-csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@dataclass(slots=True)
class Session:
    id: str  # SHA-256 of the cookie's token
    kind: str  # password | api_key | admin_key
    subject: dict[str, Any]  # {id, email, name, team, role}: the user as the console shows it
    expires_at: datetime
    user_id: str | None = None
    key_digest: str | None = None  # the key it acts with on /v1/* (api_key sessions; password: found later)
    key_looked_up: bool = False

    @property
    def role(self) -> str:
        return str(self.subject.get("role") or "viewer")

    @property
    def key_id(self) -> str | None:
        """The key of an api_key session without a user (its subject id is `key:<key id>`)."""
        sid = str(self.subject.get("id") or "")
        return sid[4:] if sid.startswith("key:") else None


class Sessions:
    def __init__(self, store: LedgerStore, redis: RedisClient | None = None, *, session_ttl: float = 12 * 3600,
                 cache_ttl: float | None = None, max_entries: int = 100_000) -> None:
        self.store = store
        self.redis = redis
        self.session_ttl = session_ttl
        self.cache_ttl = cache_ttl if cache_ttl is not None else (30.0 if redis is not None else 2.0)
        self.max_entries = max_entries
        self._cache: dict[str, tuple[Session | None, float]] = {}

    def start(self) -> None:
        if self.redis is not None:
            self.redis.subscribe(CHANNEL, self._on_message, on_connect=self.clear)
            self.redis.on_recover.append(self.clear)

    # ------------------------------------------------------------ sign-in / out
    async def create(self, kind: str, subject: dict[str, Any], *, user_id: str | None = None,
                     key_digest: str | None = None, ip: str | None = None) -> tuple[str, Session]:
        """A new session: (the cookie's token, the session). The token is returned once, never stored."""
        token = secrets.token_urlsafe(32)
        sid = session_id(token)
        expires = datetime.now(UTC) + timedelta(seconds=self.session_ttl)
        await self.store.create_session(sid, kind=kind, subject=subject, expires_at=expires, user_id=user_id,
                                        key_sha256=key_digest, ip=ip)
        return token, Session(sid, kind, subject, expires, user_id, key_digest, key_looked_up=key_digest is not None)

    async def resolve(self, token: str) -> Session | None:
        """The live session of a cookie token; None when unknown, expired, revoked or its user is disabled."""
        sid = session_id(token)
        entry = self._cache.get(sid)
        now = time.monotonic()
        if entry is None or entry[1] <= now:
            entry = (await self._load(sid), now + self.cache_ttl)
            if len(self._cache) >= self.max_entries:
                self.clear()
            self._cache[sid] = entry
        session = entry[0]
        if session is not None and session.expires_at <= datetime.now(UTC):
            return None
        return session

    async def _load(self, sid: str) -> Session | None:
        row = await self.store.get_session(sid)
        if row is None:
            return None
        subject = dict(row["subject"])
        if row["user_id"]:
            user = row["user"]
            if user is None or user["disabled"]:
                return None
            # the user as they are now: a role or name changed since sign-in applies at once
            subject.update(email=user["email"], name=user["name"], team=user["team"], role=user["role"])
        return Session(row["id"], row["kind"], subject, row["expires_at"], row["user_id"], row["key_sha256"],
                       key_looked_up=row["key_sha256"] is not None)

    async def acting_key(self, session: Session) -> str | None:
        """The digest of the key a session calls /v1/* with: its own (api_key), else its user's oldest usable
        key (looked up once per cached session)."""
        if not session.key_looked_up and session.user_id:
            session.key_digest = await self.store.user_key_digest(session.user_id)
            session.key_looked_up = True
        return session.key_digest

    # ------------------------------------------------------------ revocation
    async def revoke(self, sid: str) -> None:
        await self.store.revoke_session(sid)
        await self._changed(sid)

    async def revoke_user(self, user_id: str) -> None:
        """Every session of a user (deleted, disabled, password changed): here now, elsewhere via Redis."""
        await self.store.revoke_user_sessions(user_id)
        await self._changed(f"user:{user_id}")

    async def user_changed(self, user_id: str) -> None:
        """The user's role, name or keys changed: cached sessions reload it."""
        await self._changed(f"user:{user_id}")

    async def _changed(self, what: str) -> None:
        self._forget(what)
        if self.redis is not None:
            await self.redis.publish(CHANNEL, what)

    def _on_message(self, data: bytes) -> None:
        self._forget(data.decode(errors="replace"))

    def _forget(self, what: str) -> None:
        if what == "*":
            self.clear()
        elif what.startswith("user:"):
            uid = what[5:]
            for sid in [s for s, (sess, _) in self._cache.items() if sess is not None and sess.user_id == uid]:
                self._cache.pop(sid, None)
        else:
            self._cache.pop(what, None)

    def clear(self) -> None:
        self._cache.clear()
