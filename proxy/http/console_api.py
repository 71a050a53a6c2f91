"""The web console's session API and the signed-in user's own views (`/ui/api/*`).

* `POST /ui/api/session` signs a browser in with `{email, password}` or `{api_key}` (an API key or the admin
  key) and sets the `gw_session` cookie: HttpOnly, SameSite=Strict, Path=/, Secure when the request came
  over TLS (or `X-Forwarded-Proto: https` from a trusted proxy). The answer carries the CSRF token that
  state-changing calls send as `x-csrf-token`. Failed sign-ins are throttled per client IP and per account.
* `GET /ui/api/session` (who is signed in), `DELETE /ui/api/session` (sign out: revoked server-side).
* `GET|POST /ui/api/me/keys`, `GET /ui/api/me/usage`: the user's own keys and usage.

The key or password is never logged, stored or echoed; the cookie holds a random token whose SHA-256 is
the stored session id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, StringConstraints, model_validator

from proxy.config.base import Budget, Limits
from proxy.core.errors import AUTHENTICATION, PERMISSION, GatewayError
from proxy.core.identity import sha256_hex
from proxy.core.strict import Strict
from proxy.gateway import GATEWAY
from proxy.http.admin import admin_key_name
from proxy.http.admin.audit import body_as, database, json_response, query_int, query_time, record, unprocessable
from proxy.http.admin.keys import _check_refs, _name_taken, config_record, new_secret, public
from proxy.http.admin.usage import RECENT_FIELDS, _flush
from proxy.http.clientip import ClientIPResolver, parse_hop
from proxy.ledger import DuplicateKeyError
from proxy.observability.logs import get_logger
from proxy.users.service import not_signed_in, subject
from proxy.users.sessions import COOKIE, Session, csrf_token

log = get_logger("gateway.console")
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class SignIn(Strict):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)] | None = None
    password: str | None = Field(None, min_length=1, max_length=1024)
    api_key: str | None = Field(None, min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _one_way(self) -> SignIn:
        if self.api_key is None and (self.email is None or self.password is None):
            missing = "email" if self.email is None else "password"
            raise ValueError(f"give `email` and `password`, or `api_key` ({missing} is missing)")
        if self.api_key is not None and (self.email is not None or self.password is not None):
            raise ValueError("give either `email` and `password`, or `api_key`, not both")
        return self


class MyKeyCreate(Strict):
    name: Text
    models: list[Text] | None = Field(None, max_length=1000)
    limits: Limits | None = None  # the key's own; the user's limits and budget apply on top, across keys
    budget: Budget | None = None
    expires_at: datetime | None = None


def invalid_credentials() -> GatewayError:
    return GatewayError(401, "Wrong e-mail, password or key.", AUTHENTICATION, code="invalid_credentials")


def over_tls(request: web.Request) -> bool:
    """Over TLS here, or `X-Forwarded-Proto: https` from a trusted proxy (the TCP peer, not the client)."""
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    trusted = request.app[GATEWAY].cfg.listen.trusted_networks
    if proto != "https" or not trusted or request.transport is None:
        return False
    peer = request.transport.get_extra_info("peername")
    ip = parse_hop(str(peer[0])) if peer else None
    return ip is not None and ClientIPResolver(trusted).is_trusted(ip)


def _answer(session: Session, token: str) -> dict[str, Any]:
    return {"user": session.subject, "csrf_token": csrf_token(token), "kind": session.kind,
            "expires_at": session.expires_at.isoformat()}


async def _signed_in(request: web.Request) -> tuple[str, Session]:
    found = await request.app[GATEWAY].users.current(request)
    if found is None:
        raise not_signed_in()
    return found


# ---------------------------------------------------------------- the session
async def sign_in(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = await body_as(request, SignIn)
    ip = request.remote or ""
    throttle = gw.signin_throttle
    account = body.email.lower() if body.email else None
    await throttle.check(ip, account)
    if body.api_key is not None:
        found = await _by_key(request, body.api_key)
    else:
        database(request)
        user = await gw.users.check_password(body.email or "", body.password or "")
        found = None if user is None else ("password", subject(user), user["id"], None)
    if found is None:
        await throttle.failed(ip, account)
        if body.api_key is not None and gw.pipeline.auth.on_failure is not None:
            await gw.pipeline.auth.on_failure(ip)  # a wrong key is a wrong key, wherever it is tried
        log.info("console_sign_in_failed", client_ip=ip, method="api_key" if body.api_key else "password")
        raise invalid_credentials()
    kind, who, user_id, digest = found
    token, session = await gw.users.sessions.create(kind, who, user_id=user_id, key_digest=digest, ip=ip or None)
    log.info("console_sign_in", client_ip=ip, method=kind, user=who["id"], role=who["role"])
    resp = json_response(_answer(session, token))
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", secure=over_tls(request),
                    max_age=int(gw.cfg.console.session_ttl))
    return resp


async def _by_key(request: web.Request, secret: str) -> tuple[str, dict[str, Any], str | None, str | None] | None:
    """(kind, subject, user id, key digest) for an admin key or a usable API key; None when it is neither."""
    gw = request.app[GATEWAY]
    if (name := admin_key_name(gw.cfg, secret)) is not None:
        return "admin_key", {"id": f"admin:{name}", "email": None, "name": name, "team": None, "role": "admin"}, \
            None, None
    info = await gw.pipeline.auth.find(secret)
    if info is None or info.disabled or info.expired():
        return None
    digest = sha256_hex(secret)
    if info.user_id is None:  # a key of no user: its own usage, as a member scoped to that one key
        return "api_key", {"id": f"key:{info.id}", "email": None, "name": info.name, "team": info.team,
                           "role": "member"}, None, digest
    user = await database(request).ledger_store.get_user(info.user_id)
    if user is None or user["disabled"]:
        return None
    return "api_key", subject(user), user["id"], digest


async def get_session(request: web.Request) -> web.Response:
    token, session = await _signed_in(request)
    return json_response(_answer(session, token))


async def sign_out(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    token, session = await _signed_in(request)
    gw.users.check_csrf(request, token)
    await gw.users.sessions.revoke(session.id)
    resp = web.Response(status=204)
    resp.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=over_tls(request))
    return resp


# ---------------------------------------------------------------- my keys
def _may_see_keys(session: Session) -> None:
    if session.role == "viewer":
        raise GatewayError(403, "A viewer sees their own usage only.", PERMISSION, code="role_forbidden")


async def my_keys(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    _, session = await _signed_in(request)
    _may_see_keys(session)
    store = database(request).ledger_store
    if session.user_id is not None:
        data = [config_record(k) for k in gw.cfg.keys if k.user_id == session.user_id]
        data += [public(r) for r in await store.list_keys(user_id=session.user_id)]
    elif (key_id := session.key_id) is not None:
        ck = next((k for k in gw.cfg.keys if f"cfg:{k.name}" == key_id), None)
        row = await store.get_key(key_id) if ck is None else None
        data = [config_record(ck)] if ck is not None else [public(row)] if row is not None else []
    else:
        data = []  # an admin-key session owns no keys (the admin views list them all)
    return json_response({"object": "list", "data": data})


async def create_my_key(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    token, session = await _signed_in(request)
    gw.users.check_csrf(request, token)
    _may_see_keys(session)
    if session.user_id is None:
        raise GatewayError(403, "Only a signed-in user can create keys of their own.", PERMISSION,
                           code="role_forbidden")
    body = await body_as(request, MyKeyCreate)
    _check_refs(gw.cfg, body)  # type: ignore[arg-type]
    if body.expires_at is not None:
        exp = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=UTC)
        if exp <= datetime.now(UTC):
            raise unprocessable("expires_at", "must be in the future")
    store = database(request).ledger_store
    await _name_taken(request, body.name)
    secret = new_secret()
    try:
        row = await store.create_key(name=body.name, key_sha256=sha256_hex(secret), models=body.models or ["*"],
                                     limits=body.limits, budget=body.budget, team=session.subject.get("team"),
                                     expires_at=body.expires_at, user_id=session.user_id)
    except DuplicateKeyError:
        raise GatewayError(409, "Key generation collided; retry.", code="duplicate_key") from None
    await record(request, f"user:{session.subject.get('email')}@{request.remote or 'unknown'}", "key.create",
                 row["id"], after=row)
    await gw.keystore.changed(row["id"])
    await gw.users.sessions.user_changed(session.user_id)  # a session without a key acts with this one now
    return json_response({**public(row), "key": secret}, status=201)


# ---------------------------------------------------------------- my usage
async def my_usage(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    _, session = await _signed_in(request)
    store = database(request).ledger_store
    filters: dict[str, Any] = {}
    budget = None
    if session.user_id is not None:
        filters["user"] = session.user_id
        user = await store.get_user(session.user_id)
        if user is not None and user.get("budget"):
            budget = await gw.admission.budget_status("user", user["id"], user["email"],
                                                      Budget.model_validate(user["budget"]))
    elif session.key_id is not None:
        filters["key"] = session.key_id
        info = await gw.pipeline.auth.find_digest(session.key_digest or "")
        if info is not None and info.budget is not None:
            budget = await gw.admission.budget_status("key", info.id, info.name, info.budget)
    if budget is not None:
        budget["percent_used"] = round(budget["used_fraction"] * 100, 2)
        budget["resets_on"] = budget["period_end"]
    since = query_time(request, "since")
    if since is None:
        since = (datetime.fromisoformat(budget["period_start"]) if budget else
                 datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0))
    until = query_time(request, "until")
    limit = query_int(request, "limit", 20, 0, 200)
    await _flush(request)
    totals = (await store.query_usage({**filters, "since": since, "until": until}, None))[0]
    recent = [] if limit == 0 else await store.recent_usage(filters.get("key"), limit=limit,
                                                            user=filters.get("user"))
    return json_response({
        "object": "usage", "user": session.subject,
        "since": since.isoformat(), "until": until.isoformat() if until else None,
        "usage": totals, "spend_usd": totals["cost_usd"], "budget": budget,
        "recent": [{**{f: r.get(f) for f in RECENT_FIELDS},
                    "total_tokens": (r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0)}
                   for r in recent if "key" not in filters or r.get("key_id") == filters["key"]],
    })


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/ui/api/session", sign_in)
    r.add_get("/ui/api/session", get_session)
    r.add_delete("/ui/api/session", sign_out)
    r.add_get("/ui/api/me/keys", my_keys)
    r.add_post("/ui/api/me/keys", create_my_key)
    r.add_get("/ui/api/me/usage", my_usage)
