"""Column types that behave the same on SQLite and PostgreSQL.

``Money`` is exact on both: ``NUMERIC(20, 6)`` on PostgreSQL, integer micro-dollars on
SQLite (whose NUMERIC affinity would silently fall back to binary floats, also inside
``spend + :amount`` in a conditional UPDATE). ``UTCDateTime`` always hands back
timezone-aware UTC datetimes, though SQLite stores no offset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Numeric
from sqlalchemy.types import TypeDecorator, TypeEngine

MICROS = Decimal(1_000_000)
QUANTUM = Decimal("0.000001")


def to_money(value: Decimal | int | str) -> Decimal:
    """Rounded once, to a millionth of a dollar."""
    return Decimal(value).quantize(QUANTUM)


class Money(TypeDecorator[Decimal]):
    impl = Numeric(20, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(20, 6, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        money = to_money(value)
        if dialect.name == "sqlite":
            return int(money * MICROS)
        return money

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return to_money(Decimal(int(value)) / MICROS)
        return to_money(value)


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
