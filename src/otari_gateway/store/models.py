"""The schema: users, budgets, virtual keys, pricing, usage, budget resets, and who owns
which upstream file and batch.

Alembic migrations in ``store/migrations`` create exactly this; a test compares the two.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from otari_gateway.store.types import Money, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ZERO = Decimal("0")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Budget(Base):
    __tablename__ = "budgets"

    budget_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    max_budget: Mapped[Decimal | None] = mapped_column(Money())
    budget_duration_sec: Mapped[int | None] = mapped_column(Integer)
    reset_alignment: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    alias: Mapped[str | None] = mapped_column(String(255))
    budget_id: Mapped[str | None] = mapped_column(
        ForeignKey("budgets.budget_id", ondelete="RESTRICT"), index=True
    )
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    spend: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    # The sum of this user's budget leases (in-flight holds included); see store/leases.py.
    reserved: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    budget_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(32))
    key_name: Mapped[str | None] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.user_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    max_budget: Mapped[Decimal | None] = mapped_column(Money())
    budget_duration_sec: Mapped[int | None] = mapped_column(Integer)
    spend: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    reserved: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    budget_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)


class BudgetLease(Base):
    """Budget headroom one gateway process has taken (see ``store/leases.py``)."""

    __tablename__ = "budget_leases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.user_id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    holder: Mapped[str] = mapped_column(String(128))
    amount: Mapped[Decimal] = mapped_column(Money())
    held: Mapped[Decimal] = mapped_column(Money())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ModelPrice(Base):
    __tablename__ = "model_pricing"
    __table_args__ = (UniqueConstraint("model_key", "effective_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_key: Mapped[str] = mapped_column(String(255), index=True)
    input_price_per_million: Mapped[Decimal | None] = mapped_column(Money())
    output_price_per_million: Mapped[Decimal | None] = mapped_column(Money())
    cache_read_price_per_million: Mapped[Decimal | None] = mapped_column(Money())
    cache_write_price_per_million: Mapped[Decimal | None] = mapped_column(Money())
    price_per_image: Mapped[Decimal | None] = mapped_column(Money())
    price_per_request: Mapped[Decimal | None] = mapped_column(Money())
    price_per_audio_second: Mapped[Decimal | None] = mapped_column(Money())
    price_per_million_characters: Mapped[Decimal | None] = mapped_column(Money())
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UsageLog(Base):
    __tablename__ = "usage_logs"
    __table_args__ = (
        Index("ix_usage_logs_user_time", "user_id", "timestamp"),
        Index("ix_usage_logs_time", "timestamp"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    model: Mapped[str] = mapped_column(String(255))
    provider: Mapped[str | None] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Part of completion_tokens (and billed with them); counted apart for reporting.
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost: Mapped[Decimal] = mapped_column(Money(), default=ZERO)
    status: Mapped[str] = mapped_column(String(16))
    error_message: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)


class BudgetResetLog(Base):
    __tablename__ = "budget_reset_logs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    budget_id: Mapped[str | None] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(255), index=True)
    api_key_id: Mapped[str | None] = mapped_column(String(64))
    previous_spend: Mapped[Decimal] = mapped_column(Money())
    reset_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GatewaySetting(Base):
    """Gateway-wide values the gateway generates itself (e.g. the master key's hash)."""

    __tablename__ = "gateway_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoredFile(Base):
    """A file uploaded through ``/v1/files`` (or a batch's output): its upstream, its owner."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_user_time", "user_id", "created_at"),)

    # The upstream's own id, which clients use.
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    instance: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(64))
    # The bare model every line of a batch input file names; None for other files.
    model: Mapped[str | None] = mapped_column(String(255))
    # The upstream's file object as of the upload, for listings.
    object: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoredBatch(Base):
    """A batch created through ``/v1/batches``; ``settled`` flips once, when it is billed."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_user_time", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    instance: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"))
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    input_file_id: Mapped[str] = mapped_column(String(255))
    endpoint: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(255))
    # The upstream's batch object as last seen, for listings.
    object: Mapped[dict[str, Any]] = mapped_column(JSON)
    settled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoredResponse(Base):
    """A response a native Responses upstream stores (``store`` not false): where, whose.

    Only the owner may retrieve, delete or continue it (``previous_response_id``); the
    upstream alone keeps its content.
    """

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    instance: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.user_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
