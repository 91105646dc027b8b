"""budget leases

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 15:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import otari_gateway.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_leases",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("amount", otari_gateway.store.types.Money(precision=20, scale=6), nullable=False),
        sa.Column("held", otari_gateway.store.types.Money(precision=20, scale=6), nullable=False),
        sa.Column(
            "expires_at", otari_gateway.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_budget_leases_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_budget_leases_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_leases")),
    )
    with op.batch_alter_table("budget_leases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_budget_leases_api_key_id"), ["api_key_id"])
        batch_op.create_index(batch_op.f("ix_budget_leases_expires_at"), ["expires_at"])
        batch_op.create_index(batch_op.f("ix_budget_leases_user_id"), ["user_id"])


def downgrade() -> None:
    with op.batch_alter_table("budget_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budget_leases_user_id"))
        batch_op.drop_index(batch_op.f("ix_budget_leases_expires_at"))
        batch_op.drop_index(batch_op.f("ix_budget_leases_api_key_id"))
    op.drop_table("budget_leases")
