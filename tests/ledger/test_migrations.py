"""Alembic migrations: idempotent, in the right schema, and identical to proxy.ledger.schema."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from proxy.cli import main
from proxy.config import DatabaseConfig
from proxy.config.agents import OptimizePolicy
from proxy.ledger import LedgerStore, db
from proxy.ledger.db import alembic_config, async_url, head_revision
from proxy.ledger.schema import metadata
from tests.ledger.conftest import postgres_url_or_skip

TABLES = {"usage", "virtual_keys", "audit_log", "budget_alerts", "webhook_subscriptions", "webhook_deliveries",
          "users", "console_sessions", "key_last_used", "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    """A store on an empty database (a new schema on PostgreSQL), not migrated yet."""
    if request.param == "sqlite":
        s = LedgerStore(f"sqlite:///{tmp_path}/sub/dir/fresh.db")  # parent dirs are created
        yield s
        await s.close()
        return
    with postgres_url_or_skip("gw_mig") as url:
        s = LedgerStore(url)
        yield s
        await s.close()


async def _tables(store: LedgerStore) -> set[str]:
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_migrate_is_idempotent(fresh: LedgerStore) -> None:
    await fresh.migrate()
    assert await _tables(fresh) >= TABLES
    assert await fresh.revision() == head_revision()
    await fresh.migrate()  # second run: nothing to do, no error
    await fresh.migrate()
    assert await fresh.revision() == head_revision()
    async with fresh.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM alembic_version"))).scalar_one() == 1


def test_head_revision_constant_is_alembics_head() -> None:
    # a new migration must bump db.HEAD_REVISION, or restarts would skip it
    assert db.HEAD_REVISION == head_revision()


async def test_restart_on_a_migrated_database_does_not_run_alembic(fresh: LedgerStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert await fresh.migrate() is True  # a new database: Alembic creates the tables

    def no_alembic(*_: Any) -> None:
        raise AssertionError("Alembic ran on a database already at the newest revision")

    monkeypatch.setattr(db, "_upgrade", no_alembic)
    assert await fresh.migrate() is False
    assert await db.stamped_revision(fresh.engine) == head_revision()


async def test_an_older_stamp_still_gets_migrated(fresh: LedgerStore) -> None:
    await fresh.migrate()
    async with fresh.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
    assert await db.stamped_revision(fresh.engine) is None
    assert await fresh.migrate() is True
    assert await _tables(fresh) >= TABLES


def test_cli_migrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"database: {{url: 'sqlite:///{tmp_path}/ledger.db'}}\n")
    assert main(["migrate", "--config", str(cfg)]) == 0
    assert "migrated to the newest revision" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
    assert main(["migrate", "--config", str(cfg)]) == 0
    assert "already at the newest revision" in capsys.readouterr().out
    cfg.write_text("database: {url: 'postgresql://gw:secret-pw@127.0.0.1:1/x'}\n")  # nothing listens there
    assert main(["migrate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "migrate failed" in err and "secret-pw" not in err
    assert main(["migrate", "--config", str(tmp_path / "missing.yaml")]) == 2


async def test_migrations_match_schema_module(fresh: LedgerStore) -> None:
    await fresh.migrate()

    def diff(conn: sa.Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata)

    async with fresh.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_downgrade_then_upgrade(fresh: LedgerStore) -> None:
    await fresh.migrate()
    async with fresh.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
    assert await _tables(fresh) <= {"alembic_version"}
    await fresh.migrate()
    assert await _tables(fresh) >= TABLES


async def _key_columns(store: LedgerStore) -> set[str]:
    async with store.engine.connect() as conn:
        return {c["name"] for c in await conn.run_sync(lambda c: sa.inspect(c).get_columns("virtual_keys"))}


async def test_0008_adds_key_optimize_and_keeps_existing_keys(fresh: LedgerStore) -> None:
    """A key stored before 0008 survives the upgrade without a policy, then takes one; the downgrade drops the
    column and keeps the key."""
    await fresh.connect()
    await db.upgrade(fresh.engine, "0007")
    assert "optimize" not in await _key_columns(fresh)
    now = datetime.now(UTC)
    async with fresh.engine.begin() as conn:  # a row as 0007 knew it (the schema module's table has `optimize`)
        await conn.execute(sa.text(
            "INSERT INTO virtual_keys (id, name, key_sha256, models, metadata, disabled, created_at, updated_at) "
            "VALUES ('key_0000000000000001', 'old', :sha, '[\"*\"]', '{}', false, :now, :now)"),
            {"sha": "a" * 64, "now": now})
    assert await fresh.migrate() is True
    assert await fresh.revision() == db.HEAD_REVISION and "optimize" in await _key_columns(fresh)
    old = await fresh.get_key("key_0000000000000001")
    assert old is not None and old["optimize"] is None and old["name"] == "old"
    changed = await fresh.update_key("key_0000000000000001", {"optimize": OptimizePolicy(mode="compact")})
    assert changed is not None and changed["optimize"] == {"mode": "compact", "min_tokens": 500}
    assert (await fresh.find_key_by_hash("a" * 64))["optimize"] == {"mode": "compact", "min_tokens": 500}
    assert (await fresh.update_key("key_0000000000000001", {"optimize": None}))["optimize"] is None

    async with fresh.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0007"))
    assert "optimize" not in await _key_columns(fresh)
    async with fresh.engine.connect() as conn:
        names = (await conn.execute(sa.text("SELECT name FROM virtual_keys"))).scalars().all()
    assert names == ["old"]


async def _index_sql(store: LedgerStore, name: str) -> str:
    query = ("SELECT sql FROM sqlite_master WHERE name = :n" if store.dialect == "sqlite" else
             "SELECT indexdef FROM pg_indexes WHERE indexname = :n AND schemaname = current_schema()")
    async with store.engine.connect() as conn:
        return str((await conn.execute(sa.text(query), {"n": name})).scalar_one())


async def test_0009_usage_indexes_on_mostly_null_columns_are_partial(fresh: LedgerStore) -> None:
    """A usage row without a team, user, agent or chain writes no entry in their indexes; a query on one of them
    still uses its index."""
    await fresh.migrate()
    for name in ("ix_usage_team_created_at", "ix_usage_user_created_at", "ix_usage_agent_created_at",
                 "ix_usage_chain_id"):
        assert "IS NOT NULL" in (await _index_sql(fresh, name)), name
    assert "WHERE" not in (await _index_sql(fresh, "ix_usage_key_id_created_at"))
    if fresh.dialect == "sqlite":
        async with fresh.engine.connect() as conn:
            plan = (await conn.execute(sa.text(
                "EXPLAIN QUERY PLAN SELECT sum(cost_usd) FROM usage WHERE agent = 'a' AND created_at >= '2026'"))).all()
        assert "ix_usage_agent_created_at" in str(plan)
    async with fresh.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0008"))
    assert "IS NOT NULL" not in (await _index_sql(fresh, "ix_usage_agent_created_at"))
    assert await fresh.migrate() is True and await fresh.revision() == "0009"


async def test_postgres_tables_live_in_the_search_path_schema() -> None:
    with postgres_url_or_skip("gw_schema") as url:
        schema = url.rsplit("search_path%3D", 1)[1]
        store = LedgerStore(url)
        try:
            await store.migrate()
            async with store.engine.connect() as conn:
                rows = await conn.execute(sa.text(
                    "SELECT table_schema FROM information_schema.tables WHERE table_name = 'virtual_keys'"))
                schemas = {r[0] for r in rows}
        finally:
            await store.close()
    assert schema in schemas
    assert "public" not in schemas


async def test_sqlite_in_memory_works() -> None:
    store = LedgerStore("sqlite://")
    await store.migrate()
    assert await store.query_usage() == [{
        "calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "cost_usd": 0.0,
        "saved_usd": 0.0, "errors": 0, "error_rate": 0.0, "latency_p50_ms": None, "latency_p95_ms": None,
        "cache_hits": 0, "last_call_at": None, "prompt_saved_tokens": 0, "prompt_saved_usd": 0.0}]
    await store.close()


@pytest.mark.parametrize(("url", "driver", "settings", "query"), [
    ("sqlite:///gateway.db", "sqlite+aiosqlite", {}, {}),
    ("sqlite:////abs/path.db", "sqlite+aiosqlite", {}, {}),
    ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite", {}, {}),
    ("postgresql://u:p@h:5432/db", "postgresql+asyncpg", {}, {}),
    ("postgres://u@h/db", "postgresql+asyncpg", {}, {}),
    ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg", {}, {}),
    ("postgresql://u@h/db?options=-csearch_path%3Dgw", "postgresql+asyncpg", {"search_path": "gw"}, {}),
    ("postgresql://u@h/db?options=-c%20search_path%3Da%20-c%20statement_timeout%3D5000",
     "postgresql+asyncpg", {"search_path": "a", "statement_timeout": "5000"}, {}),
    ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg", {}, {"ssl": "require"}),
])
def test_async_url(url: str, driver: str, settings: dict[str, str], query: dict[str, str]) -> None:
    target, got = async_url(url)
    assert target.drivername == driver
    assert got == settings
    assert dict(target.query) == query


def test_unsupported_url_is_rejected_early() -> None:
    with pytest.raises(ValueError, match="unsupported database url"):
        LedgerStore("mysql://root:secret@db/x")
    with pytest.raises(ValueError) as err:
        LedgerStore("mysql://root:secret@db/x")
    assert "secret" not in str(err.value)


def test_from_config() -> None:
    assert LedgerStore.from_config(DatabaseConfig(url="sqlite:///a.db")).dialect == "sqlite"


async def test_unconnected_store_says_so() -> None:
    with pytest.raises(RuntimeError, match="connect"):
        await LedgerStore("sqlite://").query_usage()


async def test_connect_fails_fast_on_bad_postgres() -> None:
    store = LedgerStore("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(OSError):
        await store.connect()
    assert store._engine is None


def test_alembic_cli(tmp_path: Path) -> None:
    """The documented CLI path: env.py builds its own engine from `-x url=...`."""
    ini = Path(__file__).parents[2] / "proxy" / "ledger" / "migrations" / "alembic.ini"
    db = tmp_path / "cli.db"
    base = [sys.executable, "-m", "alembic", "-c", str(ini)]
    done = subprocess.run([*base, "-x", f"url=sqlite:///{db}", "upgrade", "head"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
    # offline mode renders the PostgreSQL DDL without a server
    sql = subprocess.run([*base, "-x", "url=postgresql://u@h/db", "upgrade", "head", "--sql"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert sql.returncode == 0, sql.stderr
    assert "CREATE TABLE virtual_keys" in sql.stdout and "JSONB" in sql.stdout
