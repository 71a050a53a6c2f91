"""Admin API (`/admin/*`): Bearer <admin key> from `admin: {key}`, or a console session (cookie) of role
admin; each concern is a module here.

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
from proxy.gateway import GATEWAY

# modules (in this package) that add admin routes; each concern registers itself here
ADMIN_MODULES: list[str] = ["cache", "keys", "usage", "budgets", "audit", "webhooks", "users", "agents"]


def admin_key_name(cfg: GatewayConfig, secret: str) -> str | None:
    """The admin key's name when `secret` is an admin key (also for console sign-in), else None."""
    admin_key = cfg.admin.key
    if admin_key and hmac.compare_digest(secret.encode(), admin_key.encode()):
        return "admin"
    return None


async def require_admin(request: web.Request) -> str:
    """Returns the actor name for the audit log. An unknown key is a 401 as on every route; a valid API key
    that is not the admin key is a 403. Without a key header, a console session of role admin is accepted
    (its state-changing calls with the CSRF token); any other role is a 403."""
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
