"""Agents at runtime: POST/GET /admin/agents, GET/PATCH/DELETE /admin/agents/{name},
GET /admin/agents/{name}/versions, POST /admin/agents/{name}/rollback {"version": N}.

Create writes version 1; every PATCH writes a new immutable version (the request's fields over the live
version's) and makes it live; rollback makes an earlier version live again (no new version). gateway.yaml's
agents are listed too (`source: config`, version 1, read-only: 409 `read_only_agent`). Every change is audited
(`agent.create`, `agent.update`, `agent.rollback`, `agent.delete`). Bad input: 422 naming the field (a template
that does not compile or reaches for internals, such as `{{ ''.__class__ }}`, names `system`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, ValidationError

from proxy.agents.registry import from_row
from proxy.config.agents import NAME, AgentFields
from proxy.core.errors import NOT_FOUND, GatewayError
from proxy.core.strict import Strict
from proxy.gateway import GATEWAY, Gateway
from proxy.http.admin.audit import (
    actor,
    body_as,
    database,
    json_response,
    record,
    unprocessable,
    validation_error,
)
from proxy.http.limits import read_json
from proxy.ledger.agents import DuplicateAgentError


class AgentCreate(AgentFields):
    name: str = Field(min_length=1, max_length=64, pattern=NAME.pattern)


class Rollback(Strict):
    version: int = Field(ge=1)


def _not_found(name: str) -> GatewayError:
    return GatewayError(404, f"No agent named {name!r}.", NOT_FOUND, code="agent_not_found", param="name")


def _read_only(name: str) -> GatewayError:
    return GatewayError(409, f"Agent {name!r} is defined in gateway.yaml; change it there.", code="read_only_agent",
                        param="name")


def _check_alias(gw: Gateway, fields: AgentFields) -> None:
    if fields.model not in gw.cfg.models:
        raise unprocessable("model", f"unknown alias {fields.model!r}; an agent runs on one of the gateway's aliases")
    if fields.optimize is not None and fields.optimize.via is not None and fields.optimize.via not in gw.cfg.models:
        raise unprocessable("optimize.via", f"unknown alias {fields.optimize.via!r}")


def _record(row: dict[str, Any]) -> dict[str, Any]:
    out = from_row(row).record()
    out.update(live_version=row.get("live_version", row["version"]), latest_version=row.get("latest_version"),
               created_by=row.get("created_by"), created_at=row.get("created_at"))
    return out


def _spec(fields: AgentFields) -> dict[str, Any]:
    return fields.model_dump(mode="json", exclude_none=True)


async def _db_agent(gw: Gateway, name: str) -> dict[str, Any]:
    if name in gw.agents.config_agents:
        raise _read_only(name)
    row = await gw.ledger_store.get_agent(name)
    if row is None:
        raise _not_found(name)
    return row


async def create_agent(request: web.Request) -> web.Response:
    who = await actor(request)
    body = await body_as(request, AgentCreate)
    gw = database(request)
    _check_alias(gw, body)
    if body.name in gw.agents.config_agents:
        raise _read_only(body.name)
    spec = _spec(AgentFields.model_validate(body.model_dump(exclude={"name"})))
    try:
        row = await gw.ledger_store.create_agent(body.name, spec, who)
    except DuplicateAgentError:
        raise GatewayError(409, f"An agent named {body.name!r} exists already; PATCH it to add a version.",
                           code="duplicate_agent", param="name") from None
    gw.agents.forget(body.name)
    await record(request, who, "agent.create", f"agent:{body.name}", after={"version": 1, **spec})
    return json_response(_record(row), status=201)


async def list_agents(request: web.Request) -> web.Response:
    await actor(request)
    gw = database(request)
    data = [a.record() for a in gw.agents.config_agents.values()]
    data += [_record(r) for r in await gw.ledger_store.list_agents() if r["name"] not in gw.agents.config_agents]
    return json_response({"object": "list", "data": data})


async def get_agent(request: web.Request) -> web.Response:
    await actor(request)
    gw = database(request)
    name = request.match_info["name"]
    if (cfg_agent := gw.agents.config_agents.get(name)) is not None:
        return json_response(cfg_agent.record())
    row = await gw.ledger_store.get_agent(name)
    if row is None:
        raise _not_found(name)
    return json_response(_record(row))


async def update_agent(request: web.Request) -> web.Response:
    who = await actor(request)
    raw = await read_json(request, 1024 * 1024, request.app[GATEWAY].cfg.listen.limits)
    gw = database(request)
    name = request.match_info["name"]
    before = await _db_agent(gw, name)
    if not raw:
        raise unprocessable("body", "give at least one field to change")
    if "name" in raw:
        raise unprocessable("name", "an agent cannot be renamed; create a new one")
    current = {k: before[k] for k in AgentFields.model_fields if k in before}
    try:
        fields = AgentFields.model_validate({**current, **raw})
    except ValidationError as err:
        raise validation_error(err) from None
    _check_alias(gw, fields)
    spec = _spec(fields)
    try:
        version = await gw.ledger_store.add_agent_version(name, spec, who)
    except DuplicateAgentError:
        raise GatewayError(409, f"Agent {name!r} changed meanwhile; try again.", code="agent_conflict",
                           param="name") from None
    if version is None:
        raise _not_found(name)
    gw.agents.forget(name)
    await record(request, who, "agent.update", f"agent:{name}", before={"version": before["version"]},
                 after={"version": version, **spec})
    row = await gw.ledger_store.get_agent(name)
    assert row is not None
    return json_response(_record(row))


async def list_versions(request: web.Request) -> web.Response:
    await actor(request)
    gw = database(request)
    name = request.match_info["name"]
    if (cfg_agent := gw.agents.config_agents.get(name)) is not None:
        return json_response({"object": "list", "data": [cfg_agent.record()]})
    head = await gw.ledger_store.get_agent(name)
    if head is None:
        raise _not_found(name)
    rows = await gw.ledger_store.agent_versions(name)
    data = [{**_record(r), "live": r["version"] == head["live_version"]} for r in rows]
    return json_response({"object": "list", "live_version": head["live_version"], "data": data})


async def rollback_agent(request: web.Request) -> web.Response:
    who = await actor(request)
    body = await body_as(request, Rollback)
    gw = database(request)
    name = request.match_info["name"]
    before = await _db_agent(gw, name)
    if not await gw.ledger_store.set_agent_version(name, body.version):
        raise GatewayError(404, f"Agent {name!r} has no version {body.version}.", NOT_FOUND,
                           code="agent_version_not_found", param="version")
    gw.agents.forget(name)
    await record(request, who, "agent.rollback", f"agent:{name}", before={"version": before["live_version"]},
                 after={"version": body.version})
    row = await gw.ledger_store.get_agent(name)
    assert row is not None
    return json_response(_record(row))


async def delete_agent(request: web.Request) -> web.Response:
    who = await actor(request)
    gw = database(request)
    name = request.match_info["name"]
    before = await _db_agent(gw, name)
    if not await gw.ledger_store.delete_agent(name):
        raise _not_found(name)
    gw.agents.forget(name)
    await record(request, who, "agent.delete", f"agent:{name}", before={"version": before["live_version"]})
    return json_response({"object": "gateway.agent.deleted", "name": name, "deleted": True})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/admin/agents", create_agent)
    r.add_get("/admin/agents", list_agents)
    r.add_get("/admin/agents/{name}", get_agent)
    r.add_patch("/admin/agents/{name}", update_agent)
    r.add_delete("/admin/agents/{name}", delete_agent)
    r.add_get("/admin/agents/{name}/versions", list_versions)
    r.add_post("/admin/agents/{name}/rollback", rollback_agent)
