"""The users service (a Gateway service): keeps gateway.yaml's `users:` in the database, signs users in,
and resolves a browser's console session for the HTTP layer and for the Authenticator (`session_key`)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxy.core.errors import AUTHENTICATION, PERMISSION, GatewayError
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger
from proxy.users.passwords import verify_password
from proxy.users.sessions import COOKIE, Session, Sessions, csrf_token

if TYPE_CHECKING:
    from proxy.config.access import UserConfig
    from proxy.ledger.service import LedgerService

log = get_logger("gateway.users")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def subject(user: dict[str, Any]) -> dict[str, Any]:
    """What the console shows of a signed-in user."""
    return {"id": user["id"], "email": user["email"], "name": user["name"], "team": user.get("team"),
            "role": user["role"]}


def config_record(u: UserConfig) -> dict[str, Any]:
    return {"id": u.id, "email": u.email, "name": u.name, "team": u.team, "role": u.role,
            "password_hash": u.password_hash, "limits": u.limits, "budget": u.budget, "disabled": u.disabled}


class UsersService:
    def __init__(self, ledger: LedgerService, sessions: Sessions, config_users: list[UserConfig], *,
                 purge_interval: float = 3600.0) -> None:
        self.ledger = ledger
        self.sessions = sessions
        self.config_users = config_users
        self.purge_interval = purge_interval
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def store(self) -> Any:
        return self.ledger.store

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.sessions.start()
        self._task = asyncio.get_running_loop().create_task(self._background(), name="users-sync")
        if self.ledger.ready:  # the usual case: have config users in place before the first request
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sync(), 10)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sync(self) -> None:
        if not self.synced.is_set():
            await self.store.sync_config_users([config_record(u) for u in self.config_users])
            self.synced.set()

    async def _background(self) -> None:
        """Sync the config users once the database is there (it may come up after us), then purge old
        sessions now and then."""
        while True:
            if self.ledger.ready:
                try:
                    await self._sync()
                    await self.store.purge_sessions(datetime.now(UTC) - timedelta(days=1))
                except Exception as err:
                    m.BACKEND_ERRORS.labels("db", "users").inc()
                    log.warning("users_sync_failed", error=f"{type(err).__name__}: {err}")
                    await asyncio.sleep(5)
                    continue
            await asyncio.sleep(self.purge_interval if self.synced.is_set() else 1.0)

    # ------------------------------------------------------------ sign-in
    async def check_password(self, email: str, password: str) -> dict[str, Any] | None:
        """The user (public record) when the e-mail and password match an enabled user with a password."""
        creds = await self.store.user_credentials(email)
        ok = await verify_password(creds["password_hash"] if creds else None, password)
        if not ok or creds is None or creds["disabled"]:
            return None
        return await self.store.get_user(creds["id"])

    # ------------------------------------------------------------ the browser's session
    async def current(self, request: web.Request) -> tuple[str, Session] | None:
        """(cookie token, session) when the request carries a session cookie; 401 when that session is
        unknown, expired or revoked; None without a cookie."""
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        if len(token) > 256:
            raise not_signed_in()
        session = await self.sessions.resolve(token)
        if session is None:
            raise not_signed_in()
        return token, session

    @staticmethod
    def check_csrf(request: web.Request, token: str) -> None:
        """State-changing requests made with the cookie must echo the session's CSRF token."""
        if request.method in SAFE_METHODS:
            return
        sent = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
            raise GatewayError(403, "Missing or invalid x-csrf-token header for this console session.",
                               PERMISSION, code="csrf_failed")

    async def session_key(self, request: web.Request) -> str | None:
        """Authenticator.session_key: the digest of the key a signed-in browser calls /v1/* with."""
        found = await self.current(request)
        if found is None:
            return None
        token, session = found
        self.check_csrf(request, token)
        if session.role == "viewer" and request.method not in SAFE_METHODS:
            raise GatewayError(403, "A viewer can see their usage but not call models.", PERMISSION,
                               code="role_forbidden")
        digest = await self.sessions.acting_key(session)
        if digest is None:
            raise GatewayError(403, "This console session has no API key to act with; create a key first.",
                               PERMISSION, code="no_key")
        return digest


def not_signed_in() -> GatewayError:
    return GatewayError(401, "Not signed in, or the console session expired or was revoked.", AUTHENTICATION,
                        code="not_signed_in")
