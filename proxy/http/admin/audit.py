"""GET /admin/audit, and what every admin module shares: the actor, the audit record, JSON in and out.

Every admin change is written to the audit log: who (`<admin key name>@<client ip>`: the name from
`admin.keys`, `admin` for `admin.key`), what (`key.create`, `key.update`, `budget.update`, `key.rotate`,
`key.delete`, `cache.clear`, `cache.invalidate`, and `admin.auth_failed` for a key that is not an admin
key), when, from which client IP, and the record before and after — never a secret or a hash (records carry
none, and the ledger redacts such fields again).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from proxy.auth.authenticator import presented_key
from proxy.core.errors import INVALID_REQUEST, UNAVAILABLE, GatewayError
from proxy.core.units import parse_duration
from proxy.gateway import GATEWAY, Gateway
from proxy.http.admin import require_admin
from proxy.http.limits import read_json
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

M = TypeVar("M", bound=BaseModel)
log = get_logger("gateway.admin")


async def actor(request: web.Request) -> str:
    """Checks the admin key (401/403) and names the caller for the audit log. A key that is not the admin
    key is audited (`admin.auth_failed`), and one that is no key at all counts for the failed-auth throttle."""
    try:
        return f"{await require_admin(request)}@{request.remote or 'unknown'}"
    except GatewayError as err:
        if err.code in ("admin_required", "invalid_api_key", "key_disabled", "key_expired"):
            await _auth_failed(request, named=err.code != "invalid_api_key")
        raise


async def _auth_failed(request: web.Request, named: bool) -> None:
    """Audit a refused admin call. An unknown key was already counted for the failed-auth throttle by
    the Authenticator (`on_failure`); a real API key is a mistake, not a guess, and is not counted."""
    gw = request.app[GATEWAY]
    ip = request.remote or ""
    key = None
    if named:
        try:
            key = await gw.pipeline.auth.find(presented_key(request) or "")
        except GatewayError:  # the key store is down: the caller stays unnamed
            key = None
    # who: the API key's name when it is one, never the presented secret or its hash
    who = f"key:{key.name}@{ip or 'unknown'}" if key is not None else f"unknown@{ip or 'unknown'}"
    reason = "an API key without admin rights" if key is not None else "not the admin key"
    await record(request, who, "admin.auth_failed", request.path, after={"method": request.method, "reason": reason})


def database(request: web.Request) -> Gateway:
    """The gateway, once its database is reachable (503 otherwise): for routes that read or write it."""
    gw = request.app[GATEWAY]
    if not gw.ledger.ready:
        raise GatewayError(503, "The gateway database is unavailable.", UNAVAILABLE, code="database_unavailable")
    return gw


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json", exclude_none=True)
    raise TypeError


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS),
                        status=status, content_type="application/json")


def unprocessable(field: str, message: str, details: list[dict[str, str]] | None = None) -> GatewayError:
    return GatewayError(422, f"Invalid '{field}': {message}", INVALID_REQUEST, code="invalid_value", param=field,
                        extra={"details": details or [{"field": field, "message": message}]})


def validation_error(err: ValidationError) -> GatewayError:
    details = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "body"
        details.append({"field": where, "message": e["msg"]})
    return unprocessable(details[0]["field"], details[0]["message"], details)


async def body_as(request: web.Request, model: type[M]) -> M:
    """Parse and validate a JSON body: 400 for non-JSON, 422 naming the first bad field."""
    raw = await read_json(request, 1024 * 1024, request.app[GATEWAY].cfg.listen.limits)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise validation_error(err) from None


def query_time(request: web.Request, name: str) -> datetime | None:
    """ISO 8601 (`2025-01-31`, `2025-01-31T12:00:00Z`) or a look-back such as `24h`, `7d`."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(raw))
    except ValueError:
        raise unprocessable(name, "expected an ISO 8601 time or a look-back like 24h or 7d") from None


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise unprocessable(name, "expected an integer") from None
    if not lo <= value <= hi:
        raise unprocessable(name, f"must be between {lo} and {hi}")
    return value


async def record(request: web.Request, who: str, action: str, target: str | None, before: Any = None,
                 after: Any = None) -> None:
    """Write the audit row; a failure is logged and counted but does not undo the (done) change."""
    store = request.app[GATEWAY].ledger_store
    try:
        await store.add_audit(who, action, target, before=before, after=after, ip=request.remote or None)
    except Exception as err:
        m.BACKEND_ERRORS.labels("db", "audit").inc()
        log.error("audit_write_failed", action=action, target=target, error=f"{type(err).__name__}: {err}")


async def list_audit(request: web.Request) -> web.Response:
    await actor(request)
    store = database(request).ledger_store
    rows = await store.list_audit(limit=query_int(request, "limit", 100, 1, 1000), since=query_time(request, "since"),
                                  target=request.query.get("target") or None,
                                  action=request.query.get("action") or None)
    return json_response({"object": "list", "data": rows})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/audit", list_audit)
