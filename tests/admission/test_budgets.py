"""Budgets per key and per team (in-process), alert events, periods and time zones, spend seeded from the
ledger after a restart; pricing and the x-gateway-cost-usd header."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import openai
import pytest

from proxy.admission.budgets import BudgetLine, MemoryBook, PeriodClock, crossed, period_at
from proxy.config.base import Budget
from proxy.metering.pricing import DEFAULT_PRICES, PriceTable, cost_of
from proxy.providers.base import Usage
from proxy.providers.settings import Price
from tests.admission.conftest import PRICING, admin, chat, metric_value, post_chat, quota_config, wait_for, with_key
from tests.conftest import GatewayFactory


async def _spend_until_refused(http: aiohttp.ClientSession, gw: Any, key: str, limit: int = 50) -> int:
    for served in range(limit):
        status, _, body = await post_chat(http, gw, chat(max_tokens=2), key=key)
        if status == 429:
            assert body["error"]["code"] == "insufficient_quota"
            return served
        assert status == 200
    raise AssertionError("never refused")


async def test_key_budget_refuses_with_insufficient_quota(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(with_key(quota_config(pricing=PRICING), budget={"usd": 0.01, "period": "monthly"}))
    client = gw.openai()
    served = 0
    with pytest.raises(openai.RateLimitError) as exc:
        for _ in range(20):
            await client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=2)
            served += 1
    err = exc.value
    assert err.code == "insufficient_quota" and err.body["type"] == "insufficient_quota"
    assert "monthly budget" in err.body["message"] and int(err.response.headers["Retry-After"]) > 0
    assert served == 5  # $0.002 a call: the 6th would start at spend == limit
    assert metric_value("gateway_budget_rejected_total", scope="key", key="dev", team="") >= 1
    # the gauges follow within a second (set by a ticker, not on every call)
    await wait_for(lambda: abs(metric_value("gateway_budget_spend_usd", scope="key", name="dev") - 0.01) < 1e-9,
                   timeout=3)
    assert metric_value("gateway_budget_limit_usd", scope="key", name="dev") == 0.01


async def test_team_budget_shared_by_its_keys_and_alerts(gateway_factory: GatewayFactory,
                                                         http: aiohttp.ClientSession) -> None:
    cfg = quota_config(pricing=PRICING, teams={"ml": {"budget": {"usd": 0.01, "period": "daily",
                                                                  "alert_thresholds": [0.5, 1.0]}}})
    cfg["keys"] = [{"name": "a", "key": "sk-a", "team": "ml"}, {"name": "b", "key": "sk-b", "team": "ml"}]
    gw = await gateway_factory(cfg)
    events: list[dict[str, Any]] = []
    gw.gateway.events.subscribe(events.append)
    for key in ("sk-a", "sk-b", "sk-a", "sk-b", "sk-a"):
        assert (await post_chat(http, gw, chat(max_tokens=2), key=key))[0] == 200
    status, _, body = await post_chat(http, gw, chat(max_tokens=2), key="sk-b")
    assert status == 429 and "team 'ml'" in body["error"]["message"]
    await wait_for(lambda: len(events) == 3)
    alerts = [e for e in events if e["type"] == "budget.threshold"]
    assert sorted(e["threshold"] for e in alerts) == [0.5, 1.0]
    # reaching the limit is also its own event (webhooks' budget.exceeded), once
    assert [e["type"] for e in events].count("budget.exceeded") == 1
    assert all(e["scope"] == "team" and e["name"] == "ml" for e in events)
    async with http.get(gw.url + "/admin/budgets", headers=admin()) as r:
        assert r.status == 200
        data = await r.json()
    (team,) = [b for b in data["data"] if b["scope"] == "team"]
    assert team["spend_usd"] == pytest.approx(0.01) and team["remaining_usd"] == 0
    assert [a["threshold"] for a in sorted(team["alerts"], key=lambda a: a["threshold"])] == [0.5, 1.0]
    assert team["period"] == "daily" and team["period_start"] < team["period_end"]


async def test_spend_survives_restart_through_the_ledger(gateway_factory: GatewayFactory, tmp_path: Any,
                                                         http: aiohttp.ClientSession) -> None:
    cfg = with_key(quota_config(pricing=PRICING, database={"url": f"sqlite:///{tmp_path}/ledger.db"}),
                   budget={"usd": 0.006, "period": "weekly"})
    first = await gateway_factory(cfg)
    assert await _spend_until_refused(http, first, "sk-test-dev") == 3
    await first.close()  # flushes the ledger
    second = await gateway_factory(cfg)
    async with http.get(second.url + "/v1/usage", headers={"Authorization": "Bearer sk-test-dev"}) as r:
        budget = (await r.json())["budget"]  # a status answer waits for the history to load
    assert budget["spend_usd"] == pytest.approx(0.006) and budget["remaining_usd"] == 0
    status, _, body = await post_chat(http, second)
    assert status == 429 and body["error"]["code"] == "insufficient_quota"


async def test_cost_header_matches_the_price_table(gateway_factory: GatewayFactory,
                                                   http: aiohttp.ClientSession) -> None:
    gw = await gateway_factory(quota_config(pricing={"mock/mock-1": {"input": 2.5, "output": 10.0}}))
    status, h, body = await post_chat(http, gw)
    u = body["usage"]
    assert float(h["x-gateway-cost-usd"]) == pytest.approx((u["prompt_tokens"] * 2.5 + u["completion_tokens"] * 10)
                                                           / 1e6, abs=1e-8)
    status, h, body = await post_chat(http, gw, {"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert status == 404


# ---------------------------------------------------------------- units
def test_periods_follow_the_configured_timezone() -> None:
    tz = ZoneInfo("America/New_York")
    now = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)  # the DST switch day in New York
    day = period_at("daily", now, tz)
    assert day.start == datetime(2025, 3, 9, tzinfo=tz) and day.end_ts - day.start.timestamp() == 23 * 3600
    week = period_at("weekly", now, tz)
    assert week.start.weekday() == 0 and week.start.date().isoformat() == "2025-03-03"
    month = period_at("monthly", datetime(2025, 12, 31, 23, 0, tzinfo=tz), tz)
    assert month.start.date().isoformat() == "2025-12-01" and month.end.date().isoformat() == "2026-01-01"
    # 03:00 UTC on the 1st is still the previous day (and month) in New York
    assert period_at("monthly", datetime(2025, 4, 1, 3, 0, tzinfo=UTC), tz).id == "monthly:2025-03-01"
    with pytest.raises(ValueError):
        period_at("yearly", now, tz)
    clock = PeriodClock("Europe/Berlin", now=lambda: 1_700_000_000.0)
    assert clock.current("daily") is clock.current("daily")


def test_memory_book_reserves_and_settles() -> None:
    line = BudgetLine("key", "k1", "k1", Budget(usd=1.0, period="daily"), period_at("daily", datetime.now(UTC),
                                                                                    ZoneInfo("UTC")))
    book = MemoryBook()
    assert book.check([line]) == (-1, [0.0])
    book.reserve([line], 0.6)
    book.reserve([line], 0.6)
    assert book.check([line])[0] == 0  # in-flight reservations already cover the budget
    assert book.settle([line], 0.5, 0.6, [line]) == [0.5]
    assert book.settle([line], 0.4, 0.6, [line]) == [0.9]
    assert book.reserved == {} and book.check([line])[0] == -1
    assert crossed(line, 0.7, 0.9) == [0.8] and crossed(line, 0.9, 1.2) == [1.0]


def test_price_table_defaults_overrides_and_prefixes() -> None:
    t = PriceTable({"gpt-4o": Price(input=1, output=2), "azure/my-deploy": Price(input=3, output=4)})
    assert t.lookup("openai", "gpt-4o").input == 1  # type: ignore[union-attr]  # override wins
    assert t.lookup("openai", "gpt-4o-mini-2024-07-18") is DEFAULT_PRICES["gpt-4o-mini"]
    assert t.lookup("openai", "gpt-4o-2024-08-06").input == 1  # type: ignore[union-attr]
    assert t.lookup("anthropic", "claude-3-5-haiku-latest") is DEFAULT_PRICES["claude-3-5-haiku"]
    assert t.lookup("gemini", "models/gemini-2.0-flash-001") is DEFAULT_PRICES["gemini-2.0-flash"]
    assert t.lookup("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0") is DEFAULT_PRICES["claude-3-5-sonnet"]
    assert t.lookup("mistral", "mistral-small-latest") is DEFAULT_PRICES["mistral-small"]
    assert t.lookup("azure", "my-deploy").output == 4  # type: ignore[union-attr]
    assert t.lookup("openai", "my-deploy") is None and t.lookup("x", "gpt-4ox") is None
    u = Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=400)
    p = DEFAULT_PRICES["gpt-4o"]
    assert cost_of(p, u) == pytest.approx((600 * 2.5 + 400 * 1.25 + 100 * 10) / 1e6)
    assert t.estimate("openai", "gpt-4o-mini", 1000, 1000) == pytest.approx((150 + 600) / 1e6)
    assert t.estimate("x", "unknown", 10, 10) == 0.0
