"""Virtual keys (lifecycle, rotation grace, no hashes leaking), audit log and budget alerts."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proxy.config.agents import OptimizePolicy
from proxy.config.base import Budget, CachePolicy, Limits
from proxy.ledger import DuplicateKeyError, LedgerStore, UsageRow
from tests.ledger.conftest import Clock


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def assert_no_hashes(record: Any, *secrets: str) -> None:
    text = repr(record)
    assert "sha256" not in text
    for s in secrets:
        assert sha(s) not in text


async def test_create_get_list(store: LedgerStore, clock: Clock) -> None:
    k = await store.create_key(
        name="ci", key_sha256=sha("sk-1"), models=["gpt-*"], limits=Limits(rpm=60),
        budget=Budget(usd=5, period="daily"), user="u1", team="red", metadata={"env": "ci", "n": 1},
        cache=CachePolicy(ttl=60), optimize=OptimizePolicy(mode="rewrite", via="cheap", min_tokens=100),
        expires_at="2030-01-01T00:00:00Z",
    )
    assert k["id"].startswith("key_") and len(k["id"]) > 8
    assert k["name"] == "ci" and k["models"] == ["gpt-*"]
    assert k["limits"] == {"rpm": 60, "per_provider": {}, "per_alias": {}}
    assert Limits.model_validate(k["limits"]).rpm == 60  # stored JSON round-trips through the config model
    assert Budget.model_validate(k["budget"]).period == "daily"
    assert k["cache"] == {"enabled": True, "ttl": 60.0}
    assert k["optimize"] == {"mode": "rewrite", "via": "cheap", "min_tokens": 100}
    assert OptimizePolicy.model_validate(k["optimize"]).via == "cheap"
    assert k["metadata"] == {"env": "ci", "n": 1}
    assert k["expires_at"] == datetime(2030, 1, 1, tzinfo=UTC)
    assert k["created_at"] == k["updated_at"] == clock.now
    assert k["disabled"] is False and k["deleted_at"] is None
    assert await store.get_key(k["id"]) == k
    assert await store.list_keys() == [k]
    for record in (k, await store.get_key(k["id"]), await store.list_keys()):
        assert_no_hashes(record, "sk-1")


async def test_defaults_and_unknown(store: LedgerStore) -> None:
    k = await store.create_key(name="min", key_sha256=sha("sk-min").upper())  # hex case is normalised
    assert (k["models"], k["metadata"], k["limits"], k["budget"], k["cache"], k["optimize"]) == (
        ["*"], {}, None, None, None, None)
    assert (await store.find_key_by_hash(sha("sk-min")))["id"] == k["id"]
    assert await store.get_key("key_missing") is None
    with pytest.raises(ValueError, match="64 hex"):
        await store.create_key(name="bad", key_sha256="abc")
    with pytest.raises(ValueError, match="name"):
        await store.create_key(name=" ", key_sha256=sha("x"))


async def test_duplicate_secret(store: LedgerStore) -> None:
    await store.create_key(name="a", key_sha256=sha("same"))
    with pytest.raises(DuplicateKeyError):
        await store.create_key(name="b", key_sha256=sha("same"))
    other = await store.create_key(name="c", key_sha256=sha("other"))
    with pytest.raises(DuplicateKeyError):
        await store.rotate_key(other["id"], sha("same"), 0)
    assert len(await store.list_keys()) == 2


async def test_find_key_by_hash(store: LedgerStore) -> None:
    k = await store.create_key(name="a", key_sha256=sha("sk-a"), disabled=True)
    found = await store.find_key_by_hash(sha("sk-a"))
    assert found is not None and found["id"] == k["id"]
    assert found["disabled"] is True  # returned anyway: auth explains why it refuses
    assert found["matched_previous"] is False
    assert_no_hashes(found, "sk-a")
    assert await store.find_key_by_hash(sha("sk-other")) is None
    assert await store.find_key_by_hash("not-a-digest") is None


async def test_update(store: LedgerStore, clock: Clock) -> None:
    k = await store.create_key(name="a", key_sha256=sha("sk-a"), team="red")
    clock.advance(5)
    new = await store.update_key(k["id"], {"team": "blue", "disabled": True, "models": ["x"],
                                            "budget": {"usd": 3.0}, "expires_at": clock.now})
    assert new is not None
    assert (new["team"], new["disabled"], new["models"], new["budget"]) == ("blue", True, ["x"], {"usd": 3.0})
    assert new["expires_at"] == clock.now
    assert new["updated_at"] == clock.now and new["created_at"] == k["created_at"]
    assert await store.get_key(k["id"]) == new
    cleared = await store.update_key(k["id"], {"budget": None, "expires_at": None})
    assert cleared is not None and cleared["budget"] is None and cleared["expires_at"] is None
    tidy = await store.update_key(k["id"], {"optimize": {"mode": "compact"}})
    assert tidy is not None and tidy["optimize"] == {"mode": "compact"}
    assert (await store.update_key(k["id"], {"optimize": None}))["optimize"] is None
    assert await store.update_key("key_missing", {"team": "x"}) is None
    with pytest.raises(ValueError, match="key_sha256"):
        await store.update_key(k["id"], {"key_sha256": sha("sneaky")})
    with pytest.raises(ValueError, match="id"):
        await store.update_key(k["id"], {"id": "key_other"})


async def test_rotation_grace(store: LedgerStore, clock: Clock) -> None:
    k = await store.create_key(name="a", key_sha256=sha("old"))
    rotated = await store.rotate_key(k["id"], sha("new"), grace_seconds=3600)
    assert rotated is not None
    assert rotated["previous_expires_at"] == clock.now + timedelta(hours=1)
    assert_no_hashes(rotated, "old", "new")
    assert_no_hashes(await store.get_key(k["id"]), "old", "new")

    new = await store.find_key_by_hash(sha("new"))
    old = await store.find_key_by_hash(sha("old"))
    assert new is not None and new["id"] == k["id"] and not new["matched_previous"]
    assert old is not None and old["id"] == k["id"] and old["matched_previous"]

    clock.advance(3599)
    assert await store.find_key_by_hash(sha("old")) is not None
    clock.advance(1)  # the grace ends exactly at previous_expires_at
    assert await store.find_key_by_hash(sha("old")) is None
    assert await store.find_key_by_hash(sha("new")) is not None


async def test_rotation_without_grace_revokes_at_once(store: LedgerStore) -> None:
    k = await store.create_key(name="a", key_sha256=sha("old"))
    rotated = await store.rotate_key(k["id"], sha("new"), 0)
    assert rotated is not None and rotated["previous_expires_at"] is None
    assert await store.find_key_by_hash(sha("old")) is None
    assert (await store.find_key_by_hash(sha("new")))["id"] == k["id"]
    assert await store.rotate_key("key_missing", sha("x"), 10) is None


async def test_second_rotation_replaces_previous(store: LedgerStore) -> None:
    k = await store.create_key(name="a", key_sha256=sha("v1"))
    await store.rotate_key(k["id"], sha("v2"), 60)
    await store.rotate_key(k["id"], sha("v3"), 60)
    assert await store.find_key_by_hash(sha("v1")) is None
    assert (await store.find_key_by_hash(sha("v2")))["matched_previous"]
    assert not (await store.find_key_by_hash(sha("v3")))["matched_previous"]


async def test_delete(store: LedgerStore, clock: Clock) -> None:
    k = await store.create_key(name="a", key_sha256=sha("sk-a"))
    await store.rotate_key(k["id"], sha("sk-b"), 60)
    clock.advance(1)
    assert await store.delete_key(k["id"]) is True
    assert await store.get_key(k["id"]) is None
    assert await store.list_keys() == []
    assert await store.find_key_by_hash(sha("sk-a")) is None  # not even during the rotation grace
    assert await store.find_key_by_hash(sha("sk-b")) is None
    assert await store.delete_key(k["id"]) is False
    assert await store.update_key(k["id"], {"name": "zombie"}) is None
    # the secret can be used for a new key again
    assert (await store.create_key(name="again", key_sha256=sha("sk-b")))["name"] == "again"


async def test_keys_changed_since(store: LedgerStore, clock: Clock) -> None:
    a = await store.create_key(name="a", key_sha256=sha("a"))
    b = await store.create_key(name="b", key_sha256=sha("b"))
    everything = await store.keys_changed_since(None)
    assert {r["id"] for r in everything} == {a["id"], b["id"]}
    mark = max(r["updated_at"] for r in everything)
    assert await store.keys_changed_since(mark) == []

    clock.advance(1)
    await store.update_key(a["id"], {"disabled": True})
    clock.advance(1)
    await store.delete_key(b["id"])
    changed = await store.keys_changed_since(mark)
    assert [r["id"] for r in changed] == [a["id"], b["id"]]  # oldest change first
    assert changed[0]["disabled"] is True and changed[0]["deleted_at"] is None
    assert changed[1]["deleted_at"] == clock.now  # deletions are visible to pollers
    assert_no_hashes(changed, "a", "b")
    assert [k["id"] for k in await store.list_keys()] == [a["id"]]


async def test_list_filters(store: LedgerStore) -> None:
    await store.create_key(name="a", key_sha256=sha("a"), team="red")
    await store.create_key(name="b", key_sha256=sha("b"), team="blue", disabled=True)
    assert [k["name"] for k in await store.list_keys(team="blue")] == ["b"]
    assert [k["name"] for k in await store.list_keys(include_disabled=False)] == ["a"]


# ---------------------------------------------------------------- audit log
async def test_audit_log(store: LedgerStore, clock: Clock) -> None:
    first = await store.add_audit("admin", "key.create", "key_1", None, {"name": "a", "key": "sk-plain"})
    assert first["after"] == {"name": "a"}  # a plaintext secret never reaches the log
    clock.advance(10)
    await store.add_audit("admin", "key.update", "key_1", {"name": "a", "key_sha256": sha("a")},
                          {"name": "b", "previous_sha256": sha("z")})
    clock.advance(10)
    await store.add_audit("ops", "key.delete", "key_2", {"name": "c"}, None, ip="203.0.113.9")

    log = await store.list_audit()
    assert [e["action"] for e in log] == ["key.delete", "key.update", "key.create"]
    assert log[1]["before"] == {"name": "a"} and log[1]["after"] == {"name": "b"}
    assert log[0]["actor"] == "ops" and log[0]["after"] is None and log[0]["at"] == clock.now
    assert log[0]["ip"] == "203.0.113.9" and log[1]["ip"] is None
    assert_no_hashes(log, "a", "z")
    assert [e["action"] for e in await store.list_audit(limit=1)] == ["key.delete"]
    assert len(await store.list_audit(since=clock.now - timedelta(seconds=10))) == 2
    assert [e["action"] for e in await store.list_audit(target="key_1")] == ["key.update", "key.create"]
    assert [e["target"] for e in await store.list_audit(action="key.delete")] == ["key_2"]


# ---------------------------------------------------------------- budget alerts
async def test_budget_alert_fires_once_per_period(store: LedgerStore, clock: Clock) -> None:
    march = datetime(2025, 3, 1, tzinfo=UTC)
    april = datetime(2025, 4, 1, tzinfo=UTC)
    assert await store.record_budget_alert("key", "alice", march, 0.8, 8.1, 10.0) is True
    assert await store.record_budget_alert("key", "alice", march, 0.8, 8.5, 10.0) is False
    assert await store.record_budget_alert("key", "alice", march, 1.0, 10.2, 10.0) is True
    assert await store.record_budget_alert("key", "alice", april, 0.8, 8.0, 10.0) is True
    assert await store.record_budget_alert("team", "alice", march, 0.8, 8.0, 10.0) is True
    assert await store.record_budget_alert("key", "bob", march, 0.8, 8.0, 10.0) is True
    assert await store.record_budget_alert("key", "bob", "2025-03-01T00:00:00+00:00", 0.8, 9, 10) is False

    alerts = await store.list_budget_alerts(scope="key", name="alice")
    assert len(alerts) == 3
    first = min(alerts, key=lambda a: a["id"])
    assert (first["spend_usd"], first["limit_usd"], first["threshold"]) == (8.1, 10.0, 0.8)
    assert first["period_start"] == march and first["at"] == clock.now
    assert len(await store.list_budget_alerts()) == 5
    assert len(await store.list_budget_alerts(scope="team")) == 1
    assert len(await store.list_budget_alerts(limit=2)) == 2
    clock.advance(60)
    await store.record_budget_alert("key", "carol", march, 0.8, 8, 10)
    assert [a["name"] for a in await store.list_budget_alerts(since=clock.now)] == ["carol"]
    with pytest.raises(ValueError, match="scope"):
        await store.record_budget_alert("org", "x", march, 0.8, 1, 1)


async def test_current_secret_wins_over_another_keys_previous(store: LedgerStore) -> None:
    a = await store.create_key(name="a", key_sha256=sha("s1"))
    await store.rotate_key(a["id"], sha("s2"), 600)  # s1 is a's previous secret for 10 minutes
    b = await store.create_key(name="b", key_sha256=sha("s1"))
    found = await store.find_key_by_hash(sha("s1"))
    assert found is not None and found["id"] == b["id"] and not found["matched_previous"]


async def test_concurrent_writers(store: LedgerStore) -> None:
    """Writer inserts, key changes and reads at once: SQLite waits for its lock instead of failing."""
    async def insert(n: int) -> None:
        await store.insert_usage([UsageRow(request_id=f"{n}-{i}", alias="a", provider="p", upstream_model="m")
                                  for i in range(50)])

    async def key(n: int) -> None:
        k = await store.create_key(name=f"k{n}", key_sha256=sha(f"k{n}"))
        await store.update_key(k["id"], {"disabled": True})
        await store.add_audit("admin", "key.create", k["id"], None, k)

    await asyncio.gather(*(insert(n) for n in range(10)), *(key(n) for n in range(10)),
                         *(store.query_usage({}, "day") for _ in range(5)))
    assert (await store.query_usage())[0]["calls"] == 500
    assert len(await store.list_keys()) == 10
    assert len(await store.list_audit()) == 10
