"""Prompt optimisation on admin-API keys: virtual_keys.optimize (the key's `optimize:` policy, as JSON).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# spelled out, not imported from proxy.ledger.schema (see 0001)
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    # nullable, no default: keys created before this revision have no policy (the alias's applies, if any)
    op.add_column("virtual_keys", sa.Column("optimize", JSON))


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("optimize")
