"""Engines and migrations: config URL -> async driver URL, SQLite pragmas, PostgreSQL search_path,
and the Alembic upgrade that `LedgerStore.migrate()` runs at startup."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:  # alembic costs ~12 MiB of RSS: it is imported only when migrations run
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# the newest revision in migrations/versions (a test checks it against Alembic's own head)
HEAD_REVISION = "0009"
# pg_advisory_xact_lock key: replicas starting together must not race to create the same tables
_MIGRATION_LOCK = 0x67772D6C65646772


def async_url(url: str) -> tuple[sa.URL, dict[str, str]]:
    """`sqlite:///x` -> `sqlite+aiosqlite:///x`, `postgresql://` -> `postgresql+asyncpg://`.

    Also returns PostgreSQL server settings found in libpq-style `?options=-c name=value`, which asyncpg
    does not understand itself (e.g. `options=-csearch_path%3Dmy_schema`).
    """
    u = sa.make_url(url)
    backend = u.drivername.split("+", 1)[0]
    if backend == "sqlite":
        return u.set(drivername="sqlite+aiosqlite"), {}
    if backend not in ("postgresql", "postgres"):
        raise ValueError(f"unsupported database url {u.render_as_string(hide_password=True)!r}: "
                         "use sqlite:///path.db or postgresql://user:pass@host/db")
    query = dict(u.query)
    settings: dict[str, str] = {}
    opts = query.pop("options", None)
    for opt in (opts,) if isinstance(opts, str) else opts or ():
        words = shlex.split(opt)
        for i, word in enumerate(words):
            setting = word[2:] if word.startswith("-c") and len(word) > 2 else None
            if word == "-c" and i + 1 < len(words):
                setting = words[i + 1]
            if setting and "=" in setting:
                name, _, value = setting.partition("=")
                settings[name.strip()] = value.strip()
    if "sslmode" in query:  # libpq spelling; asyncpg takes the same values as `ssl`
        query["ssl"] = query.pop("sslmode")
    return u.set(drivername="postgresql+asyncpg", query=query), settings


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers (admin queries) never block the ledger writer; busy_timeout: concurrent writers
    # (writer + admin key changes, several workers) wait for the lock instead of failing at once
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def create_engine(url: str, *, schema: str | None = None, pool_size: int = 5,
                  echo: bool = False) -> AsyncEngine:
    target, settings = async_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if target.get_backend_name() == "sqlite":
        if target.database in (None, "", ":memory:"):
            kwargs["poolclass"] = StaticPool  # every pooled connection would see its own empty database
        else:
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(target, **kwargs)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if schema:
        settings["search_path"] = schema
    settings.setdefault("application_name", "llm-gateway")
    kwargs.update(pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size * 2, pool_recycle=1800,
                  connect_args={"server_settings": settings, "timeout": 10})
    return create_async_engine(target, **kwargs)


def alembic_config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection  # env.py migrates on this connection
    return cfg


def _upgrade(connection: sa.Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> bool:
    """Run migrations inside one transaction; False when the schema was already at HEAD_REVISION.

    That check is one plain query, so a restart on a migrated database never imports Alembic (with Mako
    and Pygments, ~12 MiB that would stay in the process). Alembic is synchronous, so it runs through
    run_sync: the driver I/O still goes through the event loop, only the (brief) script loading blocks."""
    if revision == "head" and await stamped_revision(engine) == HEAD_REVISION:
        return False
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)
    return True


async def stamped_revision(engine: AsyncEngine) -> str | None:
    """The revision in `alembic_version`, without Alembic; None on a database never migrated."""
    async with engine.connect() as conn:
        try:
            rows = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
        except sa.exc.DBAPIError:  # no such table yet
            return None
    return rows[0][0] if len(rows) == 1 else None


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        from alembic.runtime.migration import MigrationContext

        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
