"""Request signing and last use of keys: virtual_keys.signing_secret (keys created with `signing: required`)
and key_last_used (when and from which client IP each key, config or database, was last used).

Revision ID: 0005
Revises: 0004
Create Date: 2025-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable, no default: keys created before this revision are not signed
    op.add_column("virtual_keys", sa.Column("signing_secret", sa.Text()))
    op.create_table(
        "key_last_used",
        sa.Column("key_id", sa.Text(), primary_key=True),  # virtual_keys.id or cfg:<name> (no foreign key)
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_ip", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("key_last_used")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("signing_secret")
