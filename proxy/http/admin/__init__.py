"""Admin API (`/admin/*`): Bearer <admin key> from `admin: {key}`; each concern is a module here.

Every module in ADMIN_MODULES exposes `add_routes(app: web.Application) -> None`; handlers call
`await audit.actor(request)` first, which answers 401 without a key or with an unknown one, 403 for a
valid non-admin key (refusals of a presented key are audited).
"""

from __future__ import annotations

import hmac
import importlib

from aiohttp import web

from proxy.auth.authenticator import presented_key
from proxy.core.errors import AUTHENTICATION, PERMISSION, GatewayError
from proxy.gateway import GATEWAY

# modules (in this package) that add admin routes; each concern registers itself here
ADMIN_MODULES: list[str] = ["cache", "keys", "usage", "budgets", "audit", "webhooks"]


async def require_admin(request: web.Request) -> str:
    """Returns the actor name for the audit log. An unknown key is a 401 as on every route; a valid API key
    that is not the admin key is a 403."""
    secret = presented_key(request)
    if secret is None:
        raise GatewayError(401, "Missing admin key. Send `Authorization: Bearer <admin key>`.", AUTHENTICATION,
                           code="missing_api_key")
    gw = request.app[GATEWAY]
    admin_key = gw.cfg.admin.key
    if admin_key and hmac.compare_digest(secret.encode(), admin_key.encode()):
        return "admin"
    await gw.pipeline.auth.authenticate(request)  # 401 unless it is some caller's valid key
    raise GatewayError(403, "This key is not allowed to use the admin API.", PERMISSION, code="admin_required")


def add_admin_routes(app: web.Application) -> None:
    for name in ADMIN_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_routes(app)
