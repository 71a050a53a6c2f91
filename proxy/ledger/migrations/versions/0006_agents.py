"""Agents and chains (issue 18): the agents and agent_versions tables, and on usage the agent and its version,
the chain a call was a step of, and prompt optimisation (original and sent prompt tokens, the USD saved).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# spelled out, not imported from proxy.ledger.schema (see 0001)
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TS = sa.DateTime(timezone=True)
USAGE_COLUMNS = (("agent", sa.Text()), ("agent_version", sa.Integer()), ("chain_id", sa.Text()),
                 ("prompt_tokens_original", sa.Integer()), ("prompt_tokens_sent", sa.Integer()),
                 ("prompt_saved_usd", sa.Double()))


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "agent_versions",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("created_by", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
    )
    # nullable, no default: rows written before this revision are no agent's, no chain's, not optimised
    for name, type_ in USAGE_COLUMNS:
        op.add_column("usage", sa.Column(name, type_))
    op.create_index("ix_usage_agent_created_at", "usage", ["agent", "created_at"])
    op.create_index("ix_usage_chain_id", "usage", ["chain_id"])


def downgrade() -> None:
    op.drop_index("ix_usage_chain_id", table_name="usage")
    op.drop_index("ix_usage_agent_created_at", table_name="usage")
    with op.batch_alter_table("usage") as batch:
        for name, _ in reversed(USAGE_COLUMNS):
            batch.drop_column(name)
    op.drop_table("agent_versions")
    op.drop_table("agents")
