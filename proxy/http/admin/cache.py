"""Admin: response-cache invalidation.

  DELETE /admin/cache                   everything
  DELETE /admin/cache?alias=NAME        every entry asked as or served by alias NAME
  DELETE /admin/cache/{key_hash}        one entry (the hash comes back as x-gateway-cache-key)
  POST   /admin/cache/invalidate        the entry for this chat completion (or embeddings) request body

The body form computes the key as a request without routing rules would: asked and served alias equal.
While gateway.yaml turns the cache on nowhere, answers say `"enabled": false` (only a database key's own
`cache:` policy can have stored anything then).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from proxy.cache.backend import BackendUnavailable
from proxy.cache.keys import is_key
from proxy.cache.stage import ResponseCache
from proxy.core.errors import UNAVAILABLE, GatewayError, bad_request, model_not_found
from proxy.gateway import GATEWAY
from proxy.http.admin.audit import actor as admin_actor
from proxy.http.admin.audit import record
from proxy.http.limits import read_json
from proxy.http.openai_api import validate_chat, validate_embeddings
from proxy.observability.logs import get_logger

log = get_logger("gateway.admin")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _stage(request: web.Request) -> ResponseCache:
    return request.app[GATEWAY].cache


def _json_for(stage: ResponseCache, data: dict[str, Any], status: int = 200) -> web.Response:
    return _json(data if stage.configured else {**data, "enabled": False}, status)


def _unavailable(err: BackendUnavailable) -> GatewayError:
    return GatewayError(503, f"The cache backend is unavailable ({err}); try again shortly.", UNAVAILABLE,
                        code="cache_backend_unavailable", headers={"Retry-After": "1"})


async def clear(request: web.Request) -> web.Response:
    actor = await admin_actor(request)
    alias = request.query.get("alias")
    stage = _stage(request)
    try:
        deleted = await (stage.clear_alias(alias) if alias else stage.clear())
    except BackendUnavailable as err:
        raise _unavailable(err) from None
    log.info("cache_cleared", actor=actor, alias=alias, deleted=deleted)
    await record(request, actor, "cache.clear", alias, after={"alias": alias, "deleted": deleted})
    return _json_for(stage, {"deleted": deleted, **({"alias": alias} if alias else {})})


async def delete_entry(request: web.Request) -> web.Response:
    actor = await admin_actor(request)
    key = request.match_info["key_hash"].lower()
    if not is_key(key):
        raise bad_request("A cache key is 32 hex characters, as sent in x-gateway-cache-key.", param="key_hash")
    return await _delete(request, key, actor, missing=404)


async def invalidate(request: web.Request) -> web.Response:
    actor = await admin_actor(request)
    gw = request.app[GATEWAY]
    body = await read_json(request, gw.cfg.listen.max_body_bytes, gw.cfg.listen.limits)
    kind = "embeddings" if "input" in body and "messages" not in body else "chat"
    if kind == "chat":
        validate_chat(body, gw.cfg.listen.limits)
    else:
        validate_embeddings(body)
    alias = body["model"]
    if alias not in gw.cfg.models:
        raise model_not_found(alias)
    key = _stage(request).key_for(kind, alias, alias, body)
    if key is None:
        raise bad_request("This request cannot be cached, so it has no entry.")
    return await _delete(request, key, actor, missing=200)  # idempotent: "make sure it is gone"


async def _delete(request: web.Request, key: str, actor: str, missing: int) -> web.Response:
    stage = _stage(request)
    try:
        deleted = await stage.invalidate(key)
    except BackendUnavailable as err:
        raise _unavailable(err) from None
    log.info("cache_invalidated", actor=actor, key=key, deleted=deleted)
    # the entry's hash is a digest of a request, not of a secret (it is sent as x-gateway-cache-key)
    await record(request, actor, "cache.invalidate", key, after={"deleted": deleted})
    return _json_for(stage, {"key": key, "deleted": deleted}, 200 if deleted else missing)


def add_routes(app: web.Application) -> None:
    app.router.add_delete("/admin/cache", clear)
    app.router.add_post("/admin/cache/invalidate", invalidate)
    app.router.add_delete("/admin/cache/{key_hash}", delete_entry)
