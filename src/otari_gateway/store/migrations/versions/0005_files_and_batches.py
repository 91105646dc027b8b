"""files and batches: who owns which upstream file and batch

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 15:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import otari_gateway.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=True),
        sa.Column("object", sa.JSON(), nullable=False),
        sa.Column(
            "created_at", otari_gateway.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_files_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index("ix_files_user_time", "files", ["user_id", "created_at"])
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("api_key_id", sa.String(length=64), nullable=True),
        sa.Column("input_file_id", sa.String(length=255), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("object", sa.JSON(), nullable=False),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", otari_gateway.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_batches_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_batches_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index("ix_batches_user_time", "batches", ["user_id", "created_at"])
    op.create_index(op.f("ix_batches_api_key_id"), "batches", ["api_key_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_batches_api_key_id"), table_name="batches")
    op.drop_index("ix_batches_user_time", table_name="batches")
    op.drop_table("batches")
    op.drop_index("ix_files_user_time", table_name="files")
    op.drop_table("files")
