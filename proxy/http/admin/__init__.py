"""Admin API (`/admin/*`): Bearer <admin key> from `admin: {key}` or `admin: {keys: [{name, key | key_sha256}]}`
(several, for rotation without downtime), or a console session (cookie) of role admin; each concern is a
module here.

Every module in ADMIN_MODULES exposes `add_routes(app: web.Application) -> None`; handlers call
`await audit.actor(request)` first, which answers 401 without a key or with an unknown one, 403 for a
valid non-admin key (refusals of a presented key are audited) or a console session that is not an admin's.
"""

from __future__ import annotations

import hmac
import importlib

from aiohttp import web

from proxy.auth.authenticator import presented_key
from proxy.config import GatewayConfig
from proxy.core.errors import AUTHENTICATION, PERMISSION, GatewayError
from proxy.core.identity import sha256_hex
from proxy.gateway import GATEWAY

# modules (in this package) that add admin routes; each concern registers itself here
ADMIN_MODULES: list[str] = ["cache", "keys", "usage", "budgets", "audit", "webhooks", "users", "agents"]


def admin_key_name(cfg: GatewayConfig, secret: str) -> str | None:
    """The name of the admin key (`admin.key` is `admin`, `admin.keys` by their names) whose SHA-256 this
    secret has, None when it is none; for the admin API and console sign-in alike. Every entry is compared
    (in constant time), so the answer's timing does not tell which one matched."""
    digest = sha256_hex(secret)
    found = None
    for stored, name in cfg.admin.digests:
        if hmac.compare_digest(stored, digest):
            found = name
    return found


async def require_admin(request: web.Request) -> str:
    """Returns the actor name for the audit log: the admin key's name, or `user:<email>` for a console
    session. An unknown key is a 401 as on every route; a valid API key that is not an admin key is a 403.
    Without a key header, a console session of role admin is accepted (its state-changing calls with the
    CSRF token); any other role is a 403."""
    secret = presented_key(request)
    gw = request.app[GATEWAY]
    if secret is None:
        found = await gw.users.current(request)
        if found is None:
            raise GatewayError(401, "Missing admin key. Send `Authorization: Bearer <admin key>`.", AUTHENTICATION,
                               code="missing_api_key")
        token, session = found
        gw.users.check_csrf(request, token)
        if session.role != "admin":
            raise GatewayError(403, f"Role {session.role!r} may not use the admin API.", PERMISSION,
                               code="role_forbidden")
        email = session.subject.get("email")
        return f"user:{email}" if email else str(session.subject.get("name") or "admin")
    if (name := admin_key_name(gw.cfg, secret)) is not None:
        return name
    await gw.pipeline.auth.authenticate(request)  # 401 unless it is some caller's valid key
    raise GatewayError(403, "This key is not allowed to use the admin API.", PERMISSION, code="admin_required")


def add_admin_routes(app: web.Application) -> None:
    for name in ADMIN_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_routes(app)
