"""Ledger fixtures: every store test runs on SQLite (a tmp file) and on a real PostgreSQL.

`postgres_url_or_skip()` only depends on pytest, asyncpg and SQLAlchemy, so it can move to
tests/conftest.py as is when other suites need PostgreSQL too.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from proxy.ledger import LedgerStore

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TABLES = ("usage", "virtual_keys", "audit_log", "budget_alerts", "webhook_subscriptions", "webhook_deliveries",
          "users", "console_sessions", "key_last_used", "agents", "agent_versions", "stored_responses")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion from sync code, even when this thread already runs an event loop."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=target, name="pg-admin")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def postgres_url_or_skip(prefix: str = "gw_test") -> Iterator[str]:
    """Yield a `postgresql://` URL whose search_path is a fresh schema, and drop the schema afterwards.

    Reads DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test). When PostgreSQL is not
    reachable the test is skipped, or fails when CI=true: CI must not pass by silently skipping.
    """
    base = sa.make_url(os.environ.get("DATABASE_URL") or DEFAULT_POSTGRES_URL)
    shown = base.render_as_string(hide_password=True)
    if base.drivername.split("+")[0] not in ("postgresql", "postgres"):
        pytest.skip(f"DATABASE_URL is not a PostgreSQL URL: {shown}")
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"{prefix}_{secrets.token_hex(4)}"
    try:
        _run(_admin(dsn, f'CREATE SCHEMA "{schema}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        reason = f"PostgreSQL unreachable at {shown} ({type(err).__name__}: {err}); set DATABASE_URL"
        if _in_ci():
            pytest.fail(f"CI=true requires PostgreSQL: {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        # libpq-style options; LedgerStore hands them to asyncpg as server_settings
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        _run(_drop_schema(dsn, schema))


async def _drop_schema(dsn: str, schema: str) -> None:
    """DROP SCHEMA, even when a connection the test left behind holds a lock in it (a gateway stopped while its
    ledger writer was mid-transaction, as a heavily loaded machine can make happen): rather than wait forever,
    such backends are ended after a few seconds."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute("SET lock_timeout = '5s'")
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            return
        except asyncpg.exceptions.LockNotAvailableError:
            pass
        await conn.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
            schema)
        await conn.execute("SET lock_timeout = '30s'")
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One fresh schema per test run; the `store` fixture empties its tables after every test."""
    with postgres_url_or_skip() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return str(request.getfixturevalue("postgres_url"))


class Clock:
    """A settable clock for the store: rotation grace and alert times without sleeping."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(db_url: str, clock: Clock) -> AsyncIterator[LedgerStore]:
    s = LedgerStore(db_url, clock=clock)
    await s.migrate()
    try:
        yield s
    finally:
        if s.dialect == "postgresql":  # the schema is shared by the whole run
            async with s.engine.begin() as conn:
                await conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
        await s.close()
