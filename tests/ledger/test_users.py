"""Users and console sessions in the ledger database, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from proxy.ledger import DuplicateEmailError, LedgerStore
from tests.ledger.conftest import Clock

DIGEST = "a" * 64


async def test_users_crud_unique_email_and_soft_delete(store: LedgerStore) -> None:
    ann = await store.create_user(email="Ann@Example.com", name="Ann", role="member", password_hash="$argon2id$x",
                                  limits={"rpm": 5})
    assert ann["email"] == "ann@example.com" and ann["has_password"] is True and "password_hash" not in ann
    assert (await store.user_credentials("ANN@example.com"))["password_hash"] == "$argon2id$x"
    with pytest.raises(DuplicateEmailError):
        await store.create_user(email="ann@example.com", name="Other", role="viewer")
    upd = await store.update_user(ann["id"], {"role": "admin", "password_hash": None})
    assert upd is not None and upd["role"] == "admin" and upd["has_password"] is False
    assert await store.delete_user(ann["id"])
    assert await store.get_user(ann["id"]) is None and await store.find_user_by_email("ann@example.com") is None
    assert await store.update_user(ann["id"], {"name": "x"}) is None
    again = await store.create_user(email="ann@example.com", name="Ann again", role="member")
    assert [u["id"] for u in await store.list_users()] == [again["id"]]


async def test_config_users_sync(store: LedgerStore) -> None:
    rec = {"id": "cfg:a@example.com", "email": "a@example.com", "name": "A", "team": None, "role": "admin",
           "password_hash": None, "limits": None, "budget": {"usd": 5.0, "period": "daily"}, "disabled": False}
    await store.sync_config_users([rec, {**rec, "id": "cfg:b@example.com", "email": "b@example.com"}])
    await store.sync_config_users([{**rec, "name": "A2"}])  # b is gone from the config, a renamed
    users = await store.list_users()
    assert [(u["id"], u["name"], u["source"]) for u in users] == [("cfg:a@example.com", "A2", "config")]
    await store.sync_config_users([])
    assert await store.list_users() == []


async def test_key_lookup_carries_its_owner_and_sessions(store: LedgerStore, clock: Clock) -> None:
    ann = await store.create_user(email="ann@example.com", name="Ann", role="member", limits={"rpm": 5},
                                  budget={"usd": 1.0, "period": "daily"})
    key = await store.create_key(name="k", key_sha256=DIGEST, user_id=ann["id"])
    found = await store.find_key_by_hash(DIGEST)
    assert found is not None and found["user_id"] == ann["id"] and found["owner_limits"]["rpm"] == 5
    assert found["owner_budget"]["usd"] == 1.0 and found["owner_disabled"] is False
    assert await store.user_key_digest(ann["id"]) == DIGEST
    clock.advance(1)
    assert await store.touch_user_keys(ann["id"]) == [key["id"]]
    assert [k["id"] for k in await store.keys_changed_since(clock.now - timedelta(milliseconds=500))] == [key["id"]]

    expires = clock.now + timedelta(hours=1)
    await store.create_session("s1", kind="password", subject={"id": ann["id"], "role": "member"},
                               expires_at=expires, user_id=ann["id"], ip="10.0.0.1")
    got = await store.get_session("s1")
    assert got is not None and got["user"]["email"] == "ann@example.com" and got["user"]["role"] == "member"
    assert await store.revoke_user_sessions(ann["id"]) == ["s1"]
    assert await store.get_session("s1") is None
    await store.create_session("s2", kind="api_key", subject={"id": "key:x", "role": "member"},
                               expires_at=expires, key_sha256=DIGEST)
    assert (await store.get_session("s2"))["user"] is None
    clock.advance(3601)
    assert await store.get_session("s2") is None  # expired
    assert await store.purge_sessions(clock.now) == 2
