"""Queries on ``usage_logs``: filtered pages, and the summary aggregated in SQL.

Money sums are coerced to ``Money`` so they stay exact on both engines (SQLite sums
integer micro-dollars, PostgreSQL sums ``numeric``). Time buckets are computed in UTC in
SQL, spelled per dialect, and turned into aware datetimes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, func, literal_column, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.store.models import UsageLog
from otari_gateway.store.types import Money

ZERO = Decimal("0")
Dimension = Literal["model", "provider", "user_id", "api_key_id", "status"]
TimeUnit = Literal["day", "hour"]

_DIMENSION_COLUMNS: dict[str, Any] = {
    "model": UsageLog.model,
    "provider": UsageLog.provider,
    "user_id": UsageLog.user_id,
    "api_key_id": UsageLog.api_key_id,
    "status": UsageLog.status,
}
# SQLite keeps timestamps as naive-UTC text, so strftime both buckets and formats them.
_SQLITE_FORMATS = {"day": "%Y-%m-%d", "hour": "%Y-%m-%d %H"}


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Row filters shared by the list and the summary. ``start`` inclusive, ``end`` exclusive."""

    start: datetime | None = None
    end: datetime | None = None
    user_id: str | None = None
    model: str | None = None
    api_key_id: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Tally:
    requests: int = 0
    cost: Decimal = ZERO
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int = 0
    cost: Decimal = ZERO
    tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Group:
    """One breakdown row: the values of the grouped dimensions, in the order asked for."""

    keys: tuple[str | None, ...]
    tally: Tally


@dataclass(frozen=True, slots=True)
class Point:
    period_start: datetime
    tally: Tally


def _conditions(where: UsageFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.start is not None:
        conditions.append(UsageLog.timestamp >= where.start)
    if where.end is not None:
        conditions.append(UsageLog.timestamp < where.end)
    for name in ("user_id", "model", "api_key_id", "status"):
        value = getattr(where, name)
        if value is not None:
            conditions.append(_DIMENSION_COLUMNS[name] == value)
    return conditions


def _cost_sum() -> ColumnElement[Decimal]:
    return type_coerce(func.sum(UsageLog.cost), Money())


def _int_sum(column: Any) -> ColumnElement[int]:
    return func.coalesce(func.sum(column), 0)


def _tally(requests: Any, cost: Any, tokens: Any) -> Tally:
    return Tally(int(requests or 0), cost or ZERO, int(tokens or 0))


async def list_usage(
    session: AsyncSession, where: UsageFilter, *, skip: int, limit: int
) -> Sequence[UsageLog]:
    statement = (
        select(UsageLog)
        .where(*_conditions(where))
        .order_by(UsageLog.timestamp.desc(), UsageLog.id.desc())
        .offset(skip)
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


async def totals(session: AsyncSession, where: UsageFilter) -> UsageTotals:
    errors = func.coalesce(func.sum(case((UsageLog.status == "error", 1), else_=0)), 0)
    statement = select(
        func.count(),
        _cost_sum(),
        _int_sum(UsageLog.total_tokens),
        _int_sum(UsageLog.prompt_tokens),
        _int_sum(UsageLog.completion_tokens),
        _int_sum(UsageLog.reasoning_tokens),
        errors,
    ).where(*_conditions(where))
    requests, cost, tokens, prompt, completion, reasoning, failed = (
        await session.execute(statement)
    ).one()
    return UsageTotals(
        int(requests),
        cost or ZERO,
        int(tokens),
        int(prompt),
        int(completion),
        int(reasoning),
        int(failed),
    )


async def breakdown(
    session: AsyncSession, where: UsageFilter, dimensions: Sequence[Dimension]
) -> list[Group]:
    """Requests, cost and tokens per distinct combination of ``dimensions``, biggest cost first."""
    columns = [_DIMENSION_COLUMNS[name] for name in dimensions]
    statement = (
        select(*columns, func.count(), _cost_sum(), _int_sum(UsageLog.total_tokens))
        .where(*_conditions(where))
        .group_by(*columns)
    )
    groups = [
        Group(tuple(row[: len(columns)]), _tally(*row[len(columns) :]))
        for row in (await session.execute(statement)).all()
    ]
    groups.sort(key=lambda g: (-g.tally.cost, -g.tally.requests, [k or "" for k in g.keys]))
    return groups


def _bucket(dialect: str, unit: TimeUnit) -> ColumnElement[Any]:
    # Literal SQL, not bound parameters: the expression must render identically in SELECT
    # and GROUP BY, which PostgreSQL checks textually. ``unit`` comes from a closed set.
    if dialect == "sqlite":
        return func.strftime(literal_column(f"'{_SQLITE_FORMATS[unit]}'"), UsageLog.timestamp)
    utc = func.timezone(literal_column("'UTC'"), UsageLog.timestamp)
    return func.date_trunc(literal_column(f"'{unit}'"), utc)


def _as_utc(value: Any, dialect: str, unit: TimeUnit) -> datetime:
    if dialect == "sqlite":
        return datetime.strptime(str(value), _SQLITE_FORMATS[unit]).replace(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def series(session: AsyncSession, where: UsageFilter, unit: TimeUnit) -> list[Point]:
    """Requests, cost and tokens per UTC day or hour, oldest first; empty buckets omitted."""
    dialect = session.get_bind().dialect.name
    bucket = _bucket(dialect, unit).label("bucket")
    statement = (
        select(bucket, func.count(), _cost_sum(), _int_sum(UsageLog.total_tokens))
        .where(*_conditions(where))
        .group_by(bucket)
    )
    points = [
        Point(_as_utc(start, dialect, unit), _tally(requests, cost, tokens))
        for start, requests, cost, tokens in (await session.execute(statement)).all()
    ]
    points.sort(key=lambda point: point.period_start)
    return points


def add_usage_rows(session: AsyncSession, rows: Iterable[UsageLog]) -> None:
    session.add_all(list(rows))
