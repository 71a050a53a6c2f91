"""The Responses API's stored responses in the ledger database, on SQLite and PostgreSQL: per key, with a TTL."""

from __future__ import annotations

from proxy.ledger import LedgerStore
from tests.ledger.conftest import Clock

ITEMS = [{"role": "user", "content": "hi"}]
RESP = {"id": "resp_1", "object": "response", "output": [{"type": "message", "content": []}]}


async def test_owner_only_and_delete(store: LedgerStore) -> None:
    await store.save_response("resp_1", "key-a", ITEMS, RESP, ttl=60)
    assert await store.get_response("resp_1", "key-a") == {"input": ITEMS, "response": RESP}
    assert await store.get_response("resp_1", "key-b") is None  # another key's response does not exist for it
    assert not await store.delete_response("resp_1", "key-b")
    assert await store.delete_response("resp_1", "key-a")
    assert await store.get_response("resp_1", "key-a") is None
    assert not await store.delete_response("resp_1", "key-a")


async def test_expiry_and_purge(store: LedgerStore, clock: Clock) -> None:
    await store.save_response("resp_old", "k", ITEMS, RESP, ttl=60)
    await store.save_response("resp_new", "k", ITEMS, RESP, ttl=600)
    clock.advance(61)
    assert await store.get_response("resp_old", "k") is None  # expired: absent before any purge
    assert not await store.delete_response("resp_old", "k")
    assert await store.purge_responses() == 1
    assert await store.get_response("resp_new", "k") is not None
