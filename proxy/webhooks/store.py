"""Webhook subscriptions and deliveries in the ledger's database (tables in proxy/ledger/schema.py, 0003).

Every method opens its own short transaction on the LedgerStore's engine. `claim()` is how replicas
share the work: due deliveries are leased (`lease_until`) in one statement, with `FOR UPDATE SKIP LOCKED`
on PostgreSQL so two replicas never take the same row; on SQLite the single writer lock does that, and
the lease lets another process take over a delivery whose replica died mid-attempt.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from proxy.ledger import LedgerStore
from proxy.ledger.rows import utcnow
from proxy.ledger.schema import webhook_deliveries as deliveries
from proxy.ledger.schema import webhook_subscriptions as subs

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
SUBSCRIPTION_FIELDS = frozenset({"url", "events", "active", "description", "filter"})
_HIDDEN = ("secret", "previous_secret")  # never leave the store through a listing


OUTCOME_COLUMNS = ("status", "step", "next_attempt_at", "delivered_at", "last_status", "last_error")
_RECORD = (deliveries.update().where(deliveries.c.id == sa.bindparam("b_id"))
           .values(attempts=deliveries.c.attempts + 1, lease_until=None,
                   **{c: sa.bindparam(f"b_{c}", type_=deliveries.c[c].type) for c in OUTCOME_COLUMNS}))


def new_subscription_id() -> str:
    return "wh_" + secrets.token_hex(8)


def new_delivery_id() -> str:
    return "whd_" + secrets.token_hex(10)


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _HIDDEN}


class WebhookStore:
    def __init__(self, ledger: LedgerStore, clock: Callable[[], datetime] | None = None) -> None:
        self.ledger = ledger
        self.now = clock or utcnow

    @property
    def engine(self) -> Any:
        return self.ledger.engine

    @property
    def dialect(self) -> str:
        return self.ledger.dialect

    # ------------------------------------------------------------ subscriptions
    async def all_subscriptions(self) -> list[dict[str, Any]]:
        """Every subscription with its secrets (for signing): the dispatcher's view, never an API answer."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(subs).order_by(subs.c.created_at, subs.c.id))
            return [dict(r._mapping) for r in rows]

    async def get_subscription(self, sub_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(subs).where(subs.c.id == sub_id))).first()
        return dict(row._mapping) if row is not None else None

    async def create_subscription(self, fields: dict[str, Any], secret: str) -> dict[str, Any]:
        now = self.now()
        values = {**fields, "id": new_subscription_id(), "source": "api", "secret": secret, "created_at": now,
                  "updated_at": now}
        async with self.engine.begin() as conn:
            row = (await conn.execute(subs.insert().values(**values).returning(*subs.c))).one()
        return dict(row._mapping)

    async def update_subscription(self, sub_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        unknown = set(fields) - SUBSCRIPTION_FIELDS - {"disabled_reason", "failing_since"}
        if unknown:
            raise ValueError(f"cannot set subscription field(s): {', '.join(sorted(unknown))}")
        if fields.get("active"):  # turned back on: a fresh start, not an immediate re-disable
            fields = {**fields, "disabled_reason": None, "failing_since": None}
        stmt = (subs.update().where(subs.c.id == sub_id).values(**fields, updated_at=self.now())
                .returning(*subs.c))
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return dict(row._mapping) if row is not None else None

    async def delete_subscription(self, sub_id: str) -> bool:
        async with self.engine.begin() as conn:
            n = (await conn.execute(subs.delete().where(subs.c.id == sub_id))).rowcount
            await conn.execute(deliveries.delete().where(deliveries.c.subscription_id == sub_id))
        return bool(n)

    async def rotate_secret(self, sub_id: str, secret: str, grace: float) -> dict[str, Any] | None:
        now = self.now()
        stmt = (subs.update().where(subs.c.id == sub_id, subs.c.source == "api")
                .values(previous_secret=subs.c.secret, previous_expires_at=now + timedelta(seconds=grace),
                        secret=secret, updated_at=now).returning(*subs.c))
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return dict(row._mapping) if row is not None else None

    async def sync_config(self, declared: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Make the `cfg:` rows match gateway.yaml: upsert what it declares (secrets stay in the config),
        delete what it no longer does. Their delivery state (failing_since) is kept across restarts."""
        now = self.now()
        ids = [sub_id for sub_id, _ in declared]
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        async with self.engine.begin() as conn:
            for sub_id, fields in declared:
                stmt = insert(subs).values(id=sub_id, source="config", created_at=now, updated_at=now, **fields)
                update = {**fields, "updated_at": now}
                if fields.get("active"):
                    update["disabled_reason"] = None
                await conn.execute(stmt.on_conflict_do_update(index_elements=[subs.c.id], set_=update))
            stale = subs.delete().where(subs.c.source == "config")
            if ids:
                stale = stale.where(subs.c.id.not_in(ids))
            await conn.execute(stale)

    # ------------------------------------------------------------ deliveries
    async def insert_deliveries(self, rows: list[dict[str, Any]]) -> None:
        """Pending deliveries; one that exists for the same (event, subscription) is left as it is."""
        if not rows:
            return
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(deliveries).on_conflict_do_nothing(index_elements=["event_id", "subscription_id"])
        async with self.engine.begin() as conn:
            await conn.execute(stmt, rows)

    @staticmethod
    def delivery_row(event_id: str, sub_id: str, event_type: str, body: str, now: datetime) -> dict[str, Any]:
        return {"id": new_delivery_id(), "event_id": event_id, "subscription_id": sub_id, "event_type": event_type,
                "body": body, "status": PENDING, "attempts": 0, "step": 0, "next_attempt_at": now,
                "lease_until": None, "last_status": None, "last_error": None, "created_at": now, "updated_at": now,
                "delivered_at": None}

    async def claim(self, limit: int, lease: float, exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Lease up to `limit` due deliveries of active subscriptions (oldest due first)."""
        now = self.now()
        d = deliveries.c
        due = (sa.select(d.id).join(subs, subs.c.id == d.subscription_id)
               .where(d.status == PENDING, d.next_attempt_at <= now,
                      sa.or_(d.lease_until.is_(None), d.lease_until < now), subs.c.active.is_(True))
               .order_by(d.next_attempt_at).limit(limit))
        if exclude:
            due = due.where(d.subscription_id.not_in(list(exclude)))
        if self.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True, of=deliveries)
        stmt = (deliveries.update().where(d.id.in_(due.scalar_subquery()))
                .values(lease_until=now + timedelta(seconds=lease)).returning(*deliveries.c))
        async with self.engine.begin() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    async def release(self, ids: Sequence[str]) -> None:
        if ids:
            async with self.engine.begin() as conn:
                await conn.execute(deliveries.update().where(deliveries.c.id.in_(list(ids))).values(lease_until=None))

    async def record_attempts(self, outcomes: list[dict[str, Any]]) -> None:
        """Attempts' outcomes in one statement: dicts of `b_id` and `b_<column>` for OUTCOME_COLUMNS."""
        if not outcomes:
            return
        async with self.engine.begin() as conn:
            await conn.execute(_RECORD.values(updated_at=self.now()), outcomes)

    async def list_deliveries(self, sub_id: str, limit: int = 100, status: str | None = None) -> list[dict[str, Any]]:
        stmt = (sa.select(deliveries).where(deliveries.c.subscription_id == sub_id)
                .order_by(deliveries.c.created_at.desc(), deliveries.c.id).limit(limit))
        if status:
            stmt = stmt.where(deliveries.c.status == status)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(stmt)]

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id))).first()
        return dict(row._mapping) if row is not None else None

    async def retry_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        """Due now, at the start of the retry schedule (attempts keep counting)."""
        now = self.now()
        stmt = (deliveries.update().where(deliveries.c.id == delivery_id)
                .values(status=PENDING, step=0, next_attempt_at=now, lease_until=None, updated_at=now)
                .returning(*deliveries.c))
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return dict(row._mapping) if row is not None else None

    async def pending_count(self) -> int:
        stmt = sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.status == PENDING)
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())
