"""The usage ledger through the gateway (SQLite and PostgreSQL), GET /admin/usage (filters, group by,
CSV) and GET /v1/usage for a key holder."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp
import pytest

from proxy.ledger import LedgerStore
from tests.admission.conftest import PRICING, admin, chat, post_chat, quota_config
from tests.conftest import DEV_KEY, GatewayFactory, GatewayServer, MockUpstream


async def get(http: aiohttp.ClientSession, gw: GatewayServer, path: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else admin()
    async with http.get(gw.url + path, headers=headers) as r:
        body = await r.text()
        assert r.status == 200, body
        return await r.json(content_type=None) if r.content_type == "application/json" else body


def two_keys(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["keys"] = [{"name": "dev", "key": DEV_KEY, "user": "alice", "team": "ml",
                    "budget": {"usd": 1.0, "period": "daily"}, "limits": {"rpm": 100}},
                   {"name": "other", "key": "sk-other", "team": "ops"}]
    return cfg


async def traffic(http: aiohttp.ClientSession, gw: GatewayServer) -> None:
    for _ in range(3):
        assert (await post_chat(http, gw, chat("demo")))[0] == 200
    assert (await post_chat(http, gw, chat("up")))[0] == 200
    assert (await post_chat(http, gw, chat("up"), key="sk-other"))[0] == 200
    assert (await post_chat(http, gw, chat("nosuch")))[0] == 404  # an error row for dev


async def test_admin_usage_filters_groups_and_csv(gateway_factory: GatewayFactory, mock_upstream: MockUpstream,
                                                  http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(two_keys(quota_config(mock_upstream.url, pricing=PRICING)))
    await traffic(http, gw)
    data = await get(http, gw, "/admin/usage")
    t = data["totals"]
    assert t["calls"] == 6 and t["errors"] == 1 and t["error_rate"] == pytest.approx(1 / 6, abs=1e-4)
    assert t["cost_usd"] == pytest.approx(5 * 0.002) and t["latency_p50_ms"] is not None
    assert t["latency_p95_ms"] >= t["latency_p50_ms"]
    by_key = {r["key"]: r for r in (await get(http, gw, "/admin/usage?group_by=key"))["data"]}
    assert by_key["dev"]["calls"] == 5 and by_key["other"]["calls"] == 1 and by_key["dev"]["key_id"] == "cfg:dev"
    by_provider = {r["provider"]: r["calls"] for r in (await get(http, gw, "/admin/usage?group_by=provider"))["data"]}
    assert by_provider == {"mock": 3, "up": 2, "": 1}
    by_alias = {r["alias"]: r["calls"] for r in (await get(http, gw, "/admin/usage?group_by=alias"))["data"]}
    assert by_alias["up"] == 2
    (day,) = (await get(http, gw, "/admin/usage?group_by=day"))["data"]
    assert day["calls"] == 6 and len(day["day"]) == 10
    assert (await get(http, gw, "/admin/usage?team=ops"))["totals"]["calls"] == 1
    assert (await get(http, gw, "/admin/usage?user=alice&provider=mock"))["totals"]["calls"] == 3
    assert (await get(http, gw, "/admin/usage?status=4xx"))["totals"]["calls"] == 1
    assert (await get(http, gw, "/admin/usage?alias=up&key=other"))["totals"]["calls"] == 1
    assert (await get(http, gw, "/admin/usage?since=1h"))["totals"]["calls"] == 6
    assert (await get(http, gw, "/admin/usage?until=2000-01-01"))["totals"]["calls"] == 0
    text = await get(http, gw, "/admin/usage?group_by=key&format=csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["key"]: int(r["calls"]) for r in rows} == {"dev": 5, "other": 1}
    assert "cost_usd" in rows[0] and "latency_p95_ms" in rows[0]
    totals_csv = list(csv.DictReader(io.StringIO(await get(http, gw, "/admin/usage?format=csv"))))
    assert totals_csv[0]["scope"] == "total" and totals_csv[0]["calls"] == "6"
    for bad, field in (("group_by=week", "group_by"), ("status=abc", "status"), ("since=notatime", "since"),
                       ("format=xml", "format")):
        async with http.get(gw.url + f"/admin/usage?{bad}", headers=admin()) as r:
            assert r.status == 422 and (await r.json())["error"]["param"] == field


async def test_key_holder_sees_own_usage_spend_budget_and_recent(gateway_factory: GatewayFactory,
                                                                 mock_upstream: MockUpstream,
                                                                 http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(two_keys(quota_config(mock_upstream.url, pricing=PRICING)))
    await traffic(http, gw)
    mine = await get(http, gw, "/v1/usage", key=DEV_KEY)
    assert mine["key"] == {"id": "cfg:dev", "name": "dev", "user": "alice", "team": "ml", "source": "config"}
    assert mine["usage"]["calls"] == 5
    assert mine["budget"]["usd"] == 1.0 and mine["budget"]["spend_usd"] == pytest.approx(4 * 0.002)
    assert mine["budget"]["remaining_usd"] == pytest.approx(1.0 - 4 * 0.002)
    assert mine["spend_usd"] == mine["budget"]["spend_usd"]
    assert len(mine["recent"]) == 5 and all("key_id" not in r for r in mine["recent"])
    assert mine["recent"][0]["status"] == 404  # newest first
    (rpm,) = mine["limits"]
    assert rpm["metric"] == "rpm" and rpm["limit"] == 100 and rpm["remaining"] == 96  # the 404 never reached admission
    other = await get(http, gw, "/v1/usage?limit=1", key="sk-other")
    assert other["usage"]["calls"] == 1 and other["budget"] is None and len(other["recent"]) == 1
    assert other["limits"] == []
    async with http.get(gw.url + "/v1/usage", headers={"Authorization": "Bearer sk-nope"}) as r:
        assert r.status == 401


async def test_ledger_rows_through_postgres_and_flushed_on_shutdown(gateway_factory: GatewayFactory,
                                                                     pg_url: str, http: aiohttp.ClientSession) -> None:
    cfg = quota_config(database={"url": pg_url, "flush_interval": "60s"}, pricing=PRICING)
    gw = await gateway_factory(cfg)
    client = gw.openai()
    await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}],
                                         extra_headers={"x-request-id": "req-pg-1"})
    stream = await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)
    async for _ in stream:
        pass
    await gw.close()  # the writer's flush interval is a minute: only shutdown writes these rows
    store = LedgerStore(pg_url)
    await store.connect()
    try:
        rows = await store.recent_usage("cfg:dev")
    finally:
        await store.close()
    assert len(rows) == 2
    plain = next(r for r in rows if r["request_id"] == "req-pg-1")
    streamed = next(r for r in rows if r["stream"])
    assert plain["key_name"] == "dev" and plain["provider"] == "mock" and plain["upstream_model"] == "mock-1"
    assert plain["alias"] == "demo" and plain["status"] == 200 and plain["cost_usd"] == pytest.approx(0.002)
    assert plain["prompt_tokens"] == 1 and plain["completion_tokens"] == 1 and plain["latency_ms"] > 0
    assert streamed["ttft_ms"] is not None and streamed["completion_tokens"] >= 1 and not streamed["cache_hit"]


async def test_database_down_does_not_stop_serving(gateway_factory: GatewayFactory,
                                                   http: aiohttp.ClientSession) -> None:
    cfg = quota_config(database={"url": "postgresql://nobody@127.0.0.1:1/none"})
    gw = await gateway_factory(cfg)
    assert (await post_chat(http, gw))[0] == 200  # config keys, no ledger: still served
    async with http.get(gw.url + "/readyz") as r:
        assert r.status == 200  # a degraded ledger must not take the replica out of rotation
    async with http.get(gw.url + "/admin/usage", headers=admin()) as r:
        assert r.status == 503
    assert (await post_chat(http, gw, key="sk-unknown"))[0] == 503  # cannot tell: the key store is down
