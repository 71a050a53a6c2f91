"""GET /admin/usage (everyone's usage, JSON or ?format=csv) and GET /v1/usage (a key holder's own).

/admin/usage filters: key (id or name), user, team, provider, alias, model, status (200 or 4xx), since /
until (ISO 8601 or a look-back like 24h); group_by: day | key | provider | alias | team | model | user. Totals:
calls, tokens, cost, errors and error rate, latency p50/p95, cache hits, and prompt optimisation's savings
(`prompt_saved_tokens`, estimated, and `prompt_saved_usd`); filters `agent` and `chain_id`, group_by=agent.
The ledger's `user` is the user id for a key that belongs to a user (else the key's free-form `user`);
`user=` takes an id or an e-mail, and group_by=user rows name the user (`user_email`, `user_name`).

/v1/usage (the caller's own key): usage since the start of its budget period (or ?since=), spend and
budget remaining (key and team), its rate-limit windows, and its most recent calls.
"""

from __future__ import annotations

import contextlib
import csv
import io
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from proxy.gateway import GATEWAY
from proxy.http.admin.audit import actor, database, json_response, query_int, query_time, unprocessable
from proxy.http.openai_api import authenticate_bodyless
from proxy.ledger import GROUP_BYS

FILTERS = ("key", "user", "team", "provider", "alias", "model", "status", "agent", "chain_id")
CSV_COLUMNS = ("calls", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "saved_usd", "errors",
               "error_rate", "latency_p50_ms", "latency_p95_ms", "cache_hits", "prompt_saved_tokens",
               "prompt_saved_usd")
RECENT_FIELDS = ("request_id", "created_at", "alias", "provider", "upstream_model", "prompt_tokens",
                 "completion_tokens", "cached_tokens", "cost_usd", "latency_ms", "ttft_ms", "status", "error_type",
                 "cache_hit", "stream")


async def _flush(request: web.Request) -> None:
    """Rows of this replica still queued would be missing from an answer right after the calls."""
    writer = request.app[GATEWAY].ledger_writer
    if writer is not None:
        with contextlib.suppress(Exception):
            await writer.flush()


async def _query(store: Any, filters: dict[str, Any], group_by: str | None) -> tuple[dict[str, Any], list[Any]]:
    try:
        totals = (await store.query_usage(filters, None))[0]
        groups = await store.query_usage(filters, group_by) if group_by else []
    except ValueError as err:  # a bad status filter, mostly
        field = "status" if "status" in str(err) else "group_by"
        raise unprocessable(field, str(err)) from None
    return totals, groups


def _csv(group_by: str | None, totals: dict[str, Any], groups: list[dict[str, Any]]) -> web.Response:
    buf = io.StringIO()
    w = csv.writer(buf)
    extra = {"key": ["key_id"], "user": ["user_email"]}.get(group_by or "", [])
    head = [group_by, *extra] if group_by else ["scope"]
    w.writerow([*head, *CSV_COLUMNS])
    rows = groups if group_by else [{"scope": "total", **totals}]
    for r in rows:
        w.writerow([r.get(c) if r.get(c) is not None else "" for c in (*head, *CSV_COLUMNS)])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return web.Response(text=buf.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="usage-{stamp}.csv"'})


async def admin_usage(request: web.Request) -> web.Response:
    await actor(request)
    store = database(request).ledger_store
    q = request.query
    group_by = q.get("group_by") or None
    if group_by is not None and group_by not in GROUP_BYS:
        raise unprocessable("group_by", f"must be one of {', '.join(GROUP_BYS)}")
    fmt = q.get("format", "json")
    if fmt not in ("json", "csv"):
        raise unprocessable("format", "must be json or csv")
    filters: dict[str, Any] = {f: q[f] for f in FILTERS if q.get(f)}
    filters["since"] = query_time(request, "since")
    filters["until"] = query_time(request, "until")
    shown = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in filters.items() if v is not None}
    if "user" in filters and (u := await store.find_user_by_email(filters["user"])) is not None:
        filters["user"] = [u["id"], filters["user"]]  # the user's keys, and keys given that free-form name
    await _flush(request)
    totals, groups = await _query(store, filters, group_by)
    if group_by == "user":
        known = {u["id"]: u for u in await store.list_users()}
        for g in groups:
            u = known.get(g["user"])
            g["user_email"], g["user_name"] = (u["email"], u["name"]) if u else (None, None)
    if fmt == "csv":
        return _csv(group_by, totals, groups)
    return json_response({"object": "usage", "filters": shown, "group_by": group_by, "totals": totals,
                          "data": groups})


async def key_usage(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    key = await authenticate_bodyless(gw, request)
    store = database(request).ledger_store
    admission = request.app[GATEWAY].admission
    limit = query_int(request, "limit", 20, 0, 200)
    budget = await admission.budget_status("key", key.id, key.name, key.budget) if key.budget else None
    team_budget = None
    if key.team and (tb := admission.team_budgets.get(key.team)) is not None:
        team_budget = await admission.budget_status("team", key.team, key.team, tb)
    since = query_time(request, "since")
    if since is None:
        since = (datetime.fromisoformat(budget["period_start"]) if budget else
                 datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0))
    until = query_time(request, "until")
    await _flush(request)
    totals, _ = await _query(store, {"key": key.id, "since": since, "until": until}, None)
    recent = [] if limit == 0 else await store.recent_usage(key.id, limit=limit)
    return json_response({
        "object": "usage",
        "key": {"id": key.id, "name": key.name, "user": key.user, "team": key.team, "source": key.source},
        "since": since.isoformat(), "until": until.isoformat() if until else None,
        "usage": totals,
        "spend_usd": budget["spend_usd"] if budget else totals["cost_usd"],
        "budget": budget,
        "team_budget": team_budget,
        "limits": await admission.limit_status(key),
        # only this key's rows (the store also matches key names)
        "recent": [{f: r.get(f) for f in RECENT_FIELDS} for r in recent if r.get("key_id") == key.id],
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/usage", admin_usage)
    app.router.add_get("/v1/usage", key_usage)
