"""usage rows count reasoning tokens

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default fills the rows already written, which predate the count.
    op.add_column(
        "usage_logs",
        sa.Column("reasoning_tokens", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("usage_logs") as batch:
        batch.drop_column("reasoning_tokens")
