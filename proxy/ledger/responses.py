"""The Responses API's stored responses (mixed into `LedgerStore`): a Response kept with the conversation's input
items for `previous_response_id` and GET/DELETE /v1/responses/{id}. Every read and delete is by id *and* the key
that made it, so another key's response is as absent as one that never existed; expired rows read as absent
and are purged in the background (`StoredResponses`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.ledger.schema import stored_responses
from proxy.observability import metrics as m
from proxy.observability.logs import get_logger

log = get_logger("gateway.responses")
_c = stored_responses.c


class ResponsesMixin:
    engine: AsyncEngine
    _now: Callable[[], datetime]

    async def save_response(self, response_id: str, key_id: str, input_items: list[Any], response: dict[str, Any],
                            ttl: float) -> None:
        now = self._now()
        stmt = stored_responses.insert().values(id=response_id, key_id=key_id, input=input_items, response=response,
                                                created_at=now, expires_at=now + timedelta(seconds=ttl))
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

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


class StoredResponses:
    """The stored responses' TTL (`responses.store_ttl`) and their background purge, as a Gateway service."""

    def __init__(self, store: ResponsesMixin, ttl: float, ready: Callable[[], bool],
                 purge_interval: float = 3600.0) -> None:
        self.store, self.ttl, self.ready, self.purge_interval = store, ttl, ready, purge_interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._purge(), name="responses-purge")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _purge(self) -> None:
        while True:
            await asyncio.sleep(self.purge_interval)
            if self.ready():
                try:
                    await self.store.purge_responses()
                except Exception as err:
                    m.BACKEND_ERRORS.labels("db", "responses").inc()
                    log.warning("responses_purge_failed", error=f"{type(err).__name__}: {err}")
