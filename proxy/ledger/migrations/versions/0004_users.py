"""Users as a scope and console sessions: the users and console_sessions tables, virtual_keys.user_id,
and an index on usage.user (a user's keys write the user id there: budgets and group_by=user).

Revision ID: 0004
Revises: 0003
Create Date: 2025-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# spelled out, not imported from proxy.ledger.schema (see 0001)
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("team", sa.Text()),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text()),
        sa.Column("limits", JSON),
        sa.Column("budget", JSON),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_index("ix_users_updated_at", "users", ["updated_at"])
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text()),
        sa.Column("subject", JSON, nullable=False),
        sa.Column("key_sha256", sa.Text()),
        sa.Column("ip", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_console_sessions_user_id", "console_sessions", ["user_id"])
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])
    # nullable, no default: existing keys belong to no user
    op.add_column("virtual_keys", sa.Column("user_id", sa.Text()))
    op.create_index("ix_virtual_keys_user_id", "virtual_keys", ["user_id"])
    op.create_index("ix_usage_user_created_at", "usage", ["user", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_usage_user_created_at", table_name="usage")
    op.drop_index("ix_virtual_keys_user_id", table_name="virtual_keys")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("user_id")
    op.drop_table("console_sessions")
    op.drop_table("users")
