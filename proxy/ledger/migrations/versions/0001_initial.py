"""Initial tables: usage, virtual_keys, audit_log, budget_alerts.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Types are spelled out here rather than imported from proxy.ledger.schema: a migration must keep
# creating what it created on the day it was written, whatever the schema module says later.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text()),
        sa.Column("key_name", sa.Text()),
        sa.Column("user", sa.Text()),
        sa.Column("team", sa.Text()),
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("upstream_model", sa.Text(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("saved_usd", sa.Double(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("ttft_ms", sa.Double()),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.Text()),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("fallback", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_usage_created_at", "usage", ["created_at"])
    op.create_index("ix_usage_key_id_created_at", "usage", ["key_id", "created_at"])
    op.create_index("ix_usage_key_name_created_at", "usage", ["key_name", "created_at"])
    op.create_index("ix_usage_team_created_at", "usage", ["team", "created_at"])

    op.create_table(
        "virtual_keys",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_sha256", sa.Text(), nullable=False),
        sa.Column("previous_sha256", sa.Text()),
        sa.Column("previous_expires_at", TS),
        sa.Column("models", JSON, nullable=False),
        sa.Column("limits", JSON),
        sa.Column("budget", JSON),
        sa.Column("user", sa.Text()),
        sa.Column("team", sa.Text()),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("cache", JSON),
        sa.Column("expires_at", TS),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS),
        sa.UniqueConstraint("key_sha256", name="uq_virtual_keys_key_sha256"),
    )
    op.create_index("ix_virtual_keys_previous_sha256", "virtual_keys", ["previous_sha256"])
    op.create_index("ix_virtual_keys_updated_at", "virtual_keys", ["updated_at"])

    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text()),
        sa.Column("before", JSON),
        sa.Column("after", JSON),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.create_table(
        "budget_alerts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("spend_usd", sa.Double(), nullable=False),
        sa.Column("limit_usd", sa.Double(), nullable=False),
        sa.UniqueConstraint("scope", "name", "period_start", "threshold", name="uq_budget_alerts_once"),
    )
    op.create_index("ix_budget_alerts_at", "budget_alerts", ["at"])


def downgrade() -> None:
    for table in ("budget_alerts", "audit_log", "virtual_keys", "usage"):
        op.drop_table(table)
