"""Admin API (`/admin/*`): Bearer <admin key> from `admin: {key}` or `admin: {keys: [{name, key | key_sha256}]}`
(several, for rotation without downtime); each concern is a module here.

Every module in ADMIN_MODULES exposes `add_routes(app: web.Application) -> None`; handlers call
`await audit.actor(request)` first, which answers 401 without a key or with an unknown one, 403 for a
valid non-admin key (refusals of a presented key are audited).
"""

from __future__ import annotations

import hmac
import importlib

from aiohttp import web

from proxy.auth.authenticator import presented_key, sha256_hex
from proxy.core.errors import AUTHENTICATION, PERMISSION, GatewayError
from proxy.gateway import GATEWAY

# modules (in this package) that add admin routes; each concern registers itself here
ADMIN_MODULES: list[str] = ["cache", "keys", "usage", "budgets", "audit"]


def admin_name(digests: tuple[tuple[str, str], ...], secret: str) -> str | None:
    """The name of the admin key whose SHA-256 this secret has, None when it is none. Every entry is
    compared (in constant time), so the answer's timing does not tell which one matched."""
    digest = sha256_hex(secret)
    found = None
    for stored, name in digests:
        if hmac.compare_digest(stored, digest):
            found = name
    return found


async def require_admin(request: web.Request) -> str:
    """Returns the admin key's name (the actor in the audit log). An unknown key is a 401 as on every route;
    a valid API key that is not an admin key is a 403."""
    secret = presented_key(request)
    if secret is None:
        raise GatewayError(401, "Missing admin key. Send `Authorization: Bearer <admin key>`.", AUTHENTICATION,
                           code="missing_api_key")
    gw = request.app[GATEWAY]
    name = admin_name(gw.cfg.admin.digests, secret)
    if name is not None:
        return name
    await gw.pipeline.auth.authenticate(request)  # 401 unless it is some caller's valid key
    raise GatewayError(403, "This key is not allowed to use the admin API.", PERMISSION, code="admin_required")


def add_admin_routes(app: web.Application) -> None:
    for name in ADMIN_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_routes(app)
