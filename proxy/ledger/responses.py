"""The Responses API's stored responses (mixed into `LedgerStore`): a Response kept with the conversation's input
items for `previous_response_id` and GET/DELETE /v1/responses/{id}. Every read and delete is by id *and* the key
that made it, so another key's response is as absent as one that never existed; expired rows read as absent
and are purged in the background (`StoredResponses`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.infra.asyncutil import Background, cancel_and_wait
from proxy.ledger.schema import stored_responses
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

log = get_logger("gateway.responses")
_c = stored_responses.c


class ResponsesMixin:
    engine: AsyncEngine
    _now: Callable[[], datetime]

    async def save_responses(self, rows: list[tuple[str, str, list[Any], dict[str, Any]]], ttl: float) -> None:
        """(id, key id, input items, Response) rows, in one transaction."""
        now = self._now()
        expires = now + timedelta(seconds=ttl)
        values = [{"id": rid, "key_id": key_id, "input": items, "response": resp, "created_at": now,
                   "expires_at": expires} for rid, key_id, items, resp in rows]
        async with self.engine.begin() as conn:
            await conn.execute(stored_responses.insert(), values)

    async def get_response(self, response_id: str, key_id: str) -> dict[str, Any] | None:
        """{"input": [...], "response": {...}} when the key's response exists and has not expired."""
        stmt = sa.select(_c.input, _c.response).where(_c.id == response_id, _c.key_id == key_id,
                                                      _c.expires_at > self._now())
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else {"input": row.input, "response": row.response}

    async def delete_response(self, response_id: str, key_id: str) -> bool:
        stmt = stored_responses.delete().where(_c.id == response_id, _c.key_id == key_id,
                                               _c.expires_at > self._now())
        async with self.engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def purge_responses(self) -> int:
        stmt = stored_responses.delete().where(_c.expires_at <= self._now())
        async with self.engine.begin() as conn:
            return int((await conn.execute(stmt)).rowcount or 0)


Row = tuple[str, str, list[Any], dict[str, Any]]


class StoredResponses:
    """The stored responses' TTL (`responses.store_ttl`), their writes and their background purge, as a Gateway
    service.

    `save` returns once the row is committed (a `previous_response_id` sent right after, to any replica, finds
    it), but the rows of concurrent calls share one transaction: while one batch commits, the next gathers
    (group commit: one database round trip for many calls under load, no added delay for a lone one)."""

    def __init__(self, store: ResponsesMixin, ttl: float, ready: Callable[[], bool],
                 purge_interval: float = 3600.0) -> None:
        self.store, self.ttl, self.ready, self.purge_interval = store, ttl, ready, purge_interval
        self._task: asyncio.Task[None] | None = None
        self._pending: list[tuple[Row, asyncio.Future[None]]] = []
        self._writing = False  # a writer task is running (its loop takes what is pending)
        self._writer = Background()

    async def save(self, row: Row) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((row, fut))
        if not self._writing:  # else the running writer takes it next
            self._writing = True
            self._writer.spawn(self._write(), name="responses-write")
        await fut

    async def _write(self) -> None:
        try:
            await self._drain()
        finally:
            self._writing = False  # no await between the last look at _pending and this

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.save_responses([row for row, _ in batch], self.ttl)
            except Exception as err:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._purge(), name="responses-purge")

    async def close(self) -> None:
        await self._writer.wait(5.0)  # what is being written, before the ledger closes
        await cancel_and_wait(self._task)

    async def _purge(self) -> None:
        while True:
            await asyncio.sleep(self.purge_interval)
            if self.ready():
                try:
                    await self.store.purge_responses()
                except Exception as err:
                    m.BACKEND_ERRORS.labels("db", "responses").inc()
                    log.warning("responses_purge_failed", error=f"{type(err).__name__}: {err}")
