"""Keys secret scanners recognise (`sk-gw-`), last use per key (time and client IP, written at most once a
minute off the request path), and several named admin keys (rotation without downtime), through the real
server."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from proxy.config import ConfigError, parse_config
from tests.admission.conftest import ADMIN_KEY, post_chat, quota_config
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, base_config


async def call(http: aiohttp.ClientSession, gw: GatewayServer, method: str, path: str, key: str,
               body: Any = None) -> tuple[int, Any]:
    async with http.request(method, gw.url + path, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json(content_type=None)


async def test_new_keys_look_like_sk_gw(gateway_factory: GatewayFactory, http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config())
    secrets = set()
    for name in ("a", "b"):
        status, created = await call(http, gw, "POST", "/admin/keys", ADMIN_KEY, {"name": name})
        assert status == 201
        secrets.add(created["key"])
        status, rotated = await call(http, gw, "POST", f"/admin/keys/{created['id']}/rotate", ADMIN_KEY)
        secrets.add(rotated["key"])
    assert len(secrets) == 4
    assert all(re.fullmatch(r"sk-gw-[A-Za-z0-9_-]{43}", s) for s in secrets), secrets


async def test_last_use_time_and_ip_at_most_once_a_minute(gateway_factory: GatewayFactory,
                                                         http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config())
    recorder = gw.gateway.last_used
    writes: list[dict[str, Any]] = []
    write = recorder.write

    async def counting(batch: Any) -> None:
        writes.append(dict(batch))
        await write(batch)

    recorder.write = counting
    status, created = await call(http, gw, "POST", "/admin/keys", ADMIN_KEY, {"name": "svc"})
    status, _ = await call(http, gw, "POST", "/admin/keys", ADMIN_KEY, {"name": "idle"})
    before = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(5):
        assert (await post_chat(http, gw, key=created["key"]))[0] == 200
        assert (await post_chat(http, gw))[0] == 200
    await recorder.flush()
    assert len(writes) == 1 and set(writes[0]) == {created["id"], "cfg:dev"}  # one upsert, one entry per key
    status, listed = await call(http, gw, "GET", "/admin/keys", ADMIN_KEY)
    by_name = {k["name"]: k for k in listed["data"]}
    for name in ("svc", "dev"):
        used = datetime.fromisoformat(by_name[name]["last_used_at"])
        assert before <= used <= datetime.now(UTC) and by_name[name]["last_used_ip"] == "127.0.0.1"
    assert by_name["idle"]["last_used_at"] is None and by_name["idle"]["last_used_ip"] is None
    status, got = await call(http, gw, "GET", f"/admin/keys/{created['id']}", ADMIN_KEY)
    assert status == 200 and got["last_used_at"] == by_name["svc"]["last_used_at"]
    # more calls within the minute write nothing; a minute later the next use is written again
    assert (await post_chat(http, gw, key=created["key"]))[0] == 200
    await recorder.flush()
    assert len(writes) == 1
    recorder._written = {k: v - 61 for k, v in recorder._written.items()}
    assert (await post_chat(http, gw, key=created["key"]))[0] == 200
    await recorder.flush()
    assert len(writes) == 2 and set(writes[1]) == {created["id"]}


async def test_last_use_survives_restart_and_keeps_the_latest(gateway_factory: GatewayFactory, tmp_path: Any,
                                                              http: aiohttp.ClientSession) -> None:
    cfg = quota_config(database={"url": f"sqlite:///{tmp_path}/lu.db"})
    gw = await gateway_factory(cfg)
    assert (await post_chat(http, gw))[0] == 200
    await gw.close()  # flushed at shutdown
    gw2 = await gateway_factory(cfg)
    store = gw2.gateway.ledger_store
    first = (await store.last_used(["cfg:dev"]))["cfg:dev"]["last_used_at"]
    await store.touch_keys({"cfg:dev": (first - timedelta(hours=1), "10.0.0.1")})  # an older report loses
    assert (await store.last_used(["cfg:dev"]))["cfg:dev"] == {"last_used_at": first, "last_used_ip": "127.0.0.1"}


async def test_several_admin_keys_each_named_in_the_audit_log(gateway_factory: GatewayFactory,
                                                              http: aiohttp.ClientSession) -> None:
    old, new = "sk-admin-old-key", "sk-admin-new-key"
    cfg = base_config(admin={"keys": [{"name": "ops-2024", "key": old},
                                      {"name": "ops-2025", "key_sha256": hashlib.sha256(new.encode()).hexdigest()}]})
    gw = await gateway_factory(cfg)
    assert (await call(http, gw, "POST", "/admin/keys", old, {"name": "by-old"}))[0] == 201
    assert (await call(http, gw, "POST", "/admin/keys", new, {"name": "by-new"}))[0] == 201
    assert (await call(http, gw, "GET", "/admin/keys", DEV_KEY))[0] == 403  # an API key is not an admin key
    assert (await call(http, gw, "GET", "/admin/keys", "sk-nobody"))[0] == 401
    status, audit = await call(http, gw, "GET", "/admin/audit?action=key.create", new)
    actors = {row["after"]["name"]: row["actor"] for row in audit["data"]}
    assert actors == {"by-old": "ops-2024@127.0.0.1", "by-new": "ops-2025@127.0.0.1"}
    # the single `admin: {key}` of old still works, named `admin`, beside a list
    gw2 = await gateway_factory(base_config(admin={"key": ADMIN_KEY, "keys": [{"name": "ci", "key": old}]}))
    assert (await call(http, gw2, "POST", "/admin/keys", ADMIN_KEY, {"name": "legacy"}))[0] == 201
    assert (await call(http, gw2, "POST", "/admin/keys", old, {"name": "listed"}))[0] == 201
    status, audit = await call(http, gw2, "GET", "/admin/audit?action=key.create", old)
    assert status == 200 and {r["actor"] for r in audit["data"]} == {"admin@127.0.0.1", "ci@127.0.0.1"}
    assert (await call(http, gw2, "GET", "/admin/keys", ADMIN_KEY))[0] == 200


@pytest.mark.parametrize("admin_cfg, message", [
    ({"key": "a", "keys": [{"name": "admin", "key": "b"}]}, "names must be unique"),
    ({"keys": [{"name": "x", "key": "a"}, {"name": "x", "key": "b"}]}, "names must be unique"),
    ({"keys": [{"name": "x"}]}, "exactly one of `key` or `key_sha256`"),
    ({"keys": [{"name": "x", "key_sha256": "abc"}]}, "64 hex"),
    ({"keys": [{"name": "has space", "key": "a"}]}, "admin.keys.0.name"),
])
def test_admin_keys_config_errors(admin_cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(base_config(admin=admin_cfg), env={})
