"""Admin API (`/admin/*`): Bearer <admin key> from `admin: {key}`; each concern is a module here.

Every module in ADMIN_MODULES exposes `add_routes(app: web.Application) -> None`; handlers call
`await audit.actor(request)` first, which answers 401 without a key, 403 for a non-admin key (audited).
"""

from __future__ import annotations

import hmac
import importlib

from aiohttp import web

from ..auth import presented_key
from ..errors import AUTHENTICATION, PERMISSION, GatewayError
from ..state import GATEWAY

# modules (in this package) that add admin routes; each concern registers itself here
ADMIN_MODULES: list[str] = ["cache", "keys", "usage", "budgets", "audit"]


def require_admin(request: web.Request) -> str:
    """Returns the actor name for the audit log."""
    secret = presented_key(request)
    if secret is None:
        raise GatewayError(401, "Missing admin key. Send `Authorization: Bearer <admin key>`.", AUTHENTICATION,
                           code="missing_api_key")
    admin_key = request.app[GATEWAY].cfg.admin.key
    if not admin_key or not hmac.compare_digest(secret.encode(), admin_key.encode()):
        raise GatewayError(403, "This key is not allowed to use the admin API.", PERMISSION,
                           code="admin_required")
    return "admin"


def add_admin_routes(app: web.Application) -> None:
    for name in ADMIN_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_routes(app)
