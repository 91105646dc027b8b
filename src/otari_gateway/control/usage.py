"""Usage queries behind ``/v1/usage``: filtered rows, newest first, and the summary.

Read-only, so the service takes no ``ChangeListener``. Aggregation happens in SQL
(``store/usage_repo.py``); money stays ``Decimal`` end to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from otari_gateway.control.outage import available
from otari_gateway.control.values import Page
from otari_gateway.store import usage_repo
from otari_gateway.store.database import Database
from otari_gateway.store.models import UsageLog
from otari_gateway.store.usage_repo import Dimension, Group, TimeUnit, UsageFilter

__all__ = [
    "SeriesPoint",
    "TimeUnit",
    "UsageFilter",
    "UsageGroup",
    "UsageRowView",
    "UsageService",
    "UsageSummary",
]


@dataclass(frozen=True, slots=True)
class UsageRowView:
    id: str
    user_id: str | None
    api_key_id: str | None
    timestamp: datetime
    model: str
    provider: str | None
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost: Decimal
    status: str
    error_message: str | None
    status_code: int
    latency_ms: int


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """One breakdown row; only the dimensions it was grouped by are set."""

    requests: int
    cost: Decimal
    tokens: int
    model: str | None = None
    provider: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    period_start: datetime
    requests: int
    cost: Decimal
    tokens: int


@dataclass(frozen=True, slots=True)
class UsageSummary:
    total_requests: int
    total_cost: Decimal
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    error_count: int
    by_model: list[UsageGroup]
    by_user: list[UsageGroup]
    by_api_key: list[UsageGroup]
    by_provider: list[UsageGroup]
    by_status: list[UsageGroup]
    series: list[SeriesPoint]


def row_view(row: UsageLog) -> UsageRowView:
    return UsageRowView(
        id=row.id,
        user_id=row.user_id,
        api_key_id=row.api_key_id,
        timestamp=row.timestamp,
        model=row.model,
        provider=row.provider,
        endpoint=row.endpoint,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        total_tokens=row.total_tokens,
        cache_read_tokens=row.cache_read_tokens,
        cache_write_tokens=row.cache_write_tokens,
        reasoning_tokens=row.reasoning_tokens,
        cost=row.cost,
        status=row.status,
        error_message=row.error_message,
        status_code=row.status_code,
        latency_ms=row.latency_ms,
    )


def _group(group: Group, dimensions: tuple[Dimension, ...]) -> UsageGroup:
    named: dict[str, str | None] = dict(zip(dimensions, group.keys, strict=True))
    tally = group.tally
    return UsageGroup(
        tally.requests,
        tally.cost,
        tally.tokens,
        model=named.get("model"),
        provider=named.get("provider"),
        user_id=named.get("user_id"),
        api_key_id=named.get("api_key_id"),
        status=named.get("status"),
    )


class UsageService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_rows(self, where: UsageFilter, page: Page) -> list[UsageRowView]:
        async with available(self._db.session()) as session:
            rows = await usage_repo.list_usage(session, where, skip=page.skip, limit=page.limit)
            return [row_view(row) for row in rows]

    async def summary(self, where: UsageFilter, unit: TimeUnit = "day") -> UsageSummary:
        async with available(self._db.session()) as session:
            totals = await usage_repo.totals(session, where)
            groups = {
                dimensions: [
                    _group(group, dimensions)
                    for group in await usage_repo.breakdown(session, where, dimensions)
                ]
                for dimensions in _BREAKDOWNS
            }
            points = await usage_repo.series(session, where, unit)
        return UsageSummary(
            total_requests=totals.requests,
            total_cost=totals.cost,
            total_tokens=totals.tokens,
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            reasoning_tokens=totals.reasoning_tokens,
            error_count=totals.errors,
            by_model=groups[("model", "provider")],
            by_user=groups[("user_id",)],
            by_api_key=groups[("api_key_id",)],
            by_provider=groups[("provider",)],
            by_status=groups[("status",)],
            series=[
                SeriesPoint(p.period_start, p.tally.requests, p.tally.cost, p.tally.tokens)
                for p in points
            ],
        )


_BREAKDOWNS: tuple[tuple[Dimension, ...], ...] = (
    ("model", "provider"),
    ("user_id",),
    ("api_key_id",),
    ("provider",),
    ("status",),
)
