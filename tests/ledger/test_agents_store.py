"""Agents and their immutable versions in the ledger database, on SQLite and PostgreSQL; usage rows carry the
agent, its version and the chain id, and the usage query groups and filters by them."""

from __future__ import annotations

import pytest

from proxy.ledger import LedgerStore, UsageRow
from proxy.ledger.agents import DuplicateAgentError

SPEC = {"model": "demo", "system": "Hi {{ who }}", "variables": {"who": None}}


async def test_versions_are_immutable_and_rollback_moves_the_live_one(store: LedgerStore) -> None:
    row = await store.create_agent("a", SPEC, "admin@x")
    assert (row["version"], row["live_version"], row["latest_version"], row["created_by"]) == (1, 1, 1, "admin@x")
    with pytest.raises(DuplicateAgentError):
        await store.create_agent("a", SPEC, None)
    assert await store.add_agent_version("a", {**SPEC, "system": "v2"}, None) == 2
    assert await store.add_agent_version("ghost", SPEC, None) is None
    live = await store.get_agent("a")
    assert live is not None and (live["version"], live["system"]) == (2, "v2")
    assert await store.set_agent_version("a", 1) is True
    assert await store.set_agent_version("a", 9) is False
    live = await store.get_agent("a")
    assert live is not None and (live["version"], live["latest_version"]) == (1, 2)
    assert await store.add_agent_version("a", {**SPEC, "system": "v3"}, None) == 3  # after latest, not after live
    pinned = await store.get_agent("a", 2)
    assert pinned is not None and pinned["system"] == "v2" and pinned["live_version"] == 3
    assert [v["version"] for v in await store.agent_versions("a")] == [1, 2, 3]
    assert [a["name"] for a in await store.list_agents()] == ["a"]
    assert await store.delete_agent("a") is True
    assert await store.get_agent("a") is None and await store.agent_versions("a") == []
    assert await store.delete_agent("a") is False


async def test_usage_by_agent_and_chain(store: LedgerStore) -> None:
    await store.insert_usage([
        UsageRow(request_id="r1", alias="demo", agent="a", agent_version=1, chain_id="chain_1",
                 prompt_tokens_original=100, prompt_tokens_sent=60, prompt_saved_usd=0.002, cost_usd=0.01),
        UsageRow(request_id="r2", alias="demo", agent="a", agent_version=2, cost_usd=0.02),
        UsageRow(request_id="r3", alias="demo", chain_id="chain_1", cost_usd=0.04),
    ])
    groups = {g["agent"]: g for g in await store.query_usage({}, "agent")}
    assert groups["a"]["calls"] == 2 and groups[None]["calls"] == 1
    assert groups["a"]["prompt_saved_tokens"] == 40 and groups["a"]["prompt_saved_usd"] == pytest.approx(0.002)
    [chain] = await store.query_usage({"chain_id": "chain_1"})
    assert chain["calls"] == 2 and chain["cost_usd"] == pytest.approx(0.05)
