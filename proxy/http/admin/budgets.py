"""GET /admin/budgets: every key, team and user budget with its period, spend, remaining, and threshold alerts.

Spend comes from the live counters (shared through Redis when configured), alerts from the ledger
(`budget_alerts`: one row per crossing, whichever replica saw it) or, without a database, from this
process's event bus.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from proxy.config.base import Budget
from proxy.gateway import GATEWAY
from proxy.http.admin.audit import actor, database, json_response, query_int, unprocessable


async def list_budgets(request: web.Request) -> web.Response:
    await actor(request)
    gw = request.app[GATEWAY]
    admission = request.app[GATEWAY].admission
    store = database(request).ledger_store
    scope = request.query.get("scope") or None
    if scope not in (None, "key", "team", "user"):
        raise unprocessable("scope", "must be key, team or user")
    name = request.query.get("name") or None
    budgets: list[tuple[str, str, str, Budget]] = []
    budgets += [("key", f"cfg:{k.name}", k.name, k.budget) for k in gw.cfg.keys if k.budget is not None]
    budgets += [("key", r["id"], r["name"], Budget.model_validate(r["budget"]))
                for r in await store.list_keys() if r.get("budget")]
    budgets += [("team", t, t, b) for t, b in admission.team_budgets.items()]
    budgets += [("user", u["id"], u["email"], Budget.model_validate(u["budget"]))
                for u in await store.list_users() if u.get("budget")]
    alerts = await store.list_budget_alerts(limit=query_int(request, "alerts", 200, 0, 5000))
    data: list[dict[str, Any]] = []
    for sc, bid, label, budget in budgets:
        if (scope and sc != scope) or (name and name not in (bid, label)):
            continue
        status = await admission.budget_status(sc, bid, label, budget)
        start = datetime.fromisoformat(status["period_start"])
        status["alerts"] = [  # this period's crossings
            {"threshold": a["threshold"], "at": a["at"], "spend_usd": a["spend_usd"]}
            for a in alerts if a["scope"] == sc and a["name"] == bid and a["period_start"] >= start]
        data.append(status)
    return json_response({"object": "list", "data": data, "alerts": alerts})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/budgets", list_budgets)
