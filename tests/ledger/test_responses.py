"""The Responses API's stored responses in the ledger database, on SQLite and PostgreSQL: per key, with a TTL."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from proxy.ledger import LedgerStore
from proxy.ledger.responses import StoredResponses
from tests.ledger.conftest import Clock

ITEMS = [{"role": "user", "content": "hi"}]
RESP = {"id": "resp_1", "object": "response", "output": [{"type": "message", "content": []}]}


async def test_owner_only_and_delete(store: LedgerStore) -> None:
    await store.save_responses([("resp_1", "key-a", ITEMS, RESP)], ttl=60)
    assert await store.get_response("resp_1", "key-a") == {"input": ITEMS, "response": RESP}
    assert await store.get_response("resp_1", "key-b") is None  # another key's response does not exist for it
    assert not await store.delete_response("resp_1", "key-b")
    assert await store.delete_response("resp_1", "key-a")
    assert await store.get_response("resp_1", "key-a") is None
    assert not await store.delete_response("resp_1", "key-a")


async def test_expiry_and_purge(store: LedgerStore, clock: Clock) -> None:
    await store.save_responses([("resp_old", "k", ITEMS, RESP)], ttl=60)
    await store.save_responses([("resp_new", "k", ITEMS, RESP), ("resp_new2", "k", ITEMS, RESP)], ttl=600)
    clock.advance(61)
    assert await store.get_response("resp_old", "k") is None  # expired: absent before any purge
    assert not await store.delete_response("resp_old", "k")
    assert await store.purge_responses() == 1
    assert await store.get_response("resp_new", "k") is not None and await store.get_response("resp_new2", "k")


async def test_concurrent_saves_share_a_transaction(store: LedgerStore) -> None:
    """Group commit: every save returns once its row is in; saves made while a batch commits go in the next."""
    batches: list[int] = []
    real = store.save_responses

    async def counting(rows, ttl):  # type: ignore[no-untyped-def]
        batches.append(len(rows))
        await real(rows, ttl)

    store.save_responses = counting  # type: ignore[method-assign]
    stored = StoredResponses(store, ttl=60, ready=lambda: True)
    await asyncio.gather(*(stored.save((f"resp_{i}", "k", ITEMS, RESP)) for i in range(20)))
    assert sum(batches) == 20 and len(batches) < 20  # the first alone, the 19 that queued behind it together
    for i in range(20):
        assert await store.get_response(f"resp_{i}", "k") is not None
    with pytest.raises(sa.exc.IntegrityError):  # a failed write fails its callers (they log it: responses_api)
        await stored.save(("resp_0", "k", ITEMS, RESP))  # duplicate id
    await stored.close()


async def test_saves_one_after_another(store: LedgerStore) -> None:
    """A save right after the previous one returned starts a new write (none waits for a writer that ended)."""
    stored = StoredResponses(store, ttl=60, ready=lambda: True)
    async with asyncio.timeout(10):
        for i in range(5):
            await stored.save((f"resp_seq{i}", "k", ITEMS, RESP))
    assert all([await store.get_response(f"resp_seq{i}", "k") for i in range(5)])
    await stored.close()
