"""The client IP: usage.client_ip (each call's caller) and audit_log.ip (who changed what, from where).

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable, no default: rows written before this revision simply have no IP
    op.add_column("usage", sa.Column("client_ip", sa.Text()))
    op.add_column("audit_log", sa.Column("ip", sa.Text()))


def downgrade() -> None:
    # batch mode: SQLite before 3.35 cannot DROP COLUMN, Alembic copies the table instead
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("ip")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("client_ip")
