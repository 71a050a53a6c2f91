"""Alembic environment. `LedgerStore.migrate()` passes its own connection in `config.attributes`;
the alembic CLI (`alembic -c proxy/ledger/migrations/alembic.ini -x url=... upgrade head`) builds one."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from proxy.ledger.db import async_url, create_engine
from proxy.ledger.schema import metadata

config = context.config


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can only ALTER via table copies
    )
    with context.begin_transaction():
        context.run_migrations()


def _cli_url() -> str:
    return (context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("DATABASE_URL")
            or config.get_main_option("sqlalchemy.url") or "sqlite:///gateway.db")


async def _run_cli() -> None:
    engine = create_engine(_cli_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_migrations)
    finally:
        await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
elif context.is_offline_mode():
    context.configure(url=async_url(_cli_url())[0], target_metadata=metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
else:
    if config.config_file_name is not None:  # only the CLI configures logging; the gateway has its own
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    asyncio.run(_run_cli())
