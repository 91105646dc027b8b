"""price per million characters (text-to-speech)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 15:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import otari_gateway.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "model_pricing",
        sa.Column(
            "price_per_million_characters",
            otari_gateway.store.types.Money(precision=20, scale=6),
            nullable=True,
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("model_pricing") as batch:
        batch.drop_column("price_per_million_characters")
