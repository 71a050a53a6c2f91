"""Partial indexes on the usage columns most rows leave NULL (team, user, agent, chain_id): a row then writes no
entry in them (about 40% of a SQLite insert went to those four), and `WHERE x = ?` still uses them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# spelled out, not imported from proxy.ledger.schema (see 0001): index name -> its columns
INDEXES = {
    "ix_usage_team_created_at": ["team", "created_at"],
    "ix_usage_user_created_at": ["user", "created_at"],
    "ix_usage_agent_created_at": ["agent", "created_at"],
    "ix_usage_chain_id": ["chain_id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        where = sa.text(f'"{columns[0]}" IS NOT NULL')
        op.drop_index(name, table_name="usage")
        op.create_index(name, "usage", columns, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, columns in INDEXES.items():
        op.drop_index(name, table_name="usage")
        op.create_index(name, "usage", columns)
