"""``/v1/usage`` (master key): usage rows newest first, and totals with breakdowns.

Also the row model and filter parsing that ``/v1/users/{id}/usage`` reuses. Dates are
ISO 8601; a naive one is UTC; a bare date as ``end_date`` covers that whole day.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from otari_gateway.api.errors import DATABASE_UNAVAILABLE
from otari_gateway.api.inputs import no_nul_in_url
from otari_gateway.api.paging import Limit, Skip
from otari_gateway.control.usage import UsageFilter, UsageRowView, UsageService, UsageSummary
from otari_gateway.control.values import Page, as_utc
from otari_gateway.errors import InvalidRequest

_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UsageRowOut(_Out):
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
    cost: float
    status: str
    error_message: str | None
    status_code: int
    latency_ms: int


class _Tally(_Out):
    requests: int
    cost: float
    tokens: int


class ModelUsageOut(_Tally):
    model: str | None
    provider: str | None


class UserUsageOut(_Tally):
    user_id: str | None


class KeyUsageOut(_Tally):
    api_key_id: str | None


class ProviderUsageOut(_Tally):
    provider: str | None


class StatusUsageOut(_Tally):
    status: str | None


class SeriesPointOut(_Tally):
    period_start: datetime


class UsageSummaryOut(_Out):
    total_requests: int
    total_cost: float
    total_tokens: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    error_count: int
    by_model: list[ModelUsageOut]
    by_user: list[UserUsageOut]
    by_api_key: list[KeyUsageOut]
    by_provider: list[ProviderUsageOut]
    by_status: list[StatusUsageOut]
    series: list[SeriesPointOut]


def parse_instant(name: str, value: str | None, *, end: bool) -> datetime | None:
    """An aware UTC instant from an ISO date or datetime query value; 400 otherwise."""
    if value is None:
        return None
    try:
        if _BARE_DATE.match(value):
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date or datetime, got '{value}'", param=name
        ) from None
    except OverflowError:
        # The day after 9999-12-31: an end of range later than any row.
        return datetime.max.replace(tzinfo=UTC)
    try:
        return as_utc(moment)
    except InvalidRequest:
        raise InvalidRequest(f"{name} {value} is out of the supported range", param=name) from None


async def row_filter(
    start_date: Annotated[
        str | None, Query(description="Rows at or after this ISO 8601 date/datetime (naive: UTC)")
    ] = None,
    end_date: Annotated[
        str | None,
        Query(description="Rows before this datetime; a bare date includes that whole day"),
    ] = None,
    model: Annotated[str | None, Query(description="Bare upstream model")] = None,
    api_key_id: Annotated[str | None, Query()] = None,
    status: Annotated[
        Literal["success", "error"] | None, Query(description="success or error")
    ] = None,
) -> UsageFilter:
    """The filters every usage listing takes, except ``user_id``."""
    return UsageFilter(
        start=parse_instant("start_date", start_date, end=False),
        end=parse_instant("end_date", end_date, end=True),
        model=model,
        api_key_id=api_key_id,
        status=status,
    )


async def usage_filter(
    base: Annotated[UsageFilter, Depends(row_filter)],
    user_id: Annotated[str | None, Query()] = None,
) -> UsageFilter:
    return replace(base, user_id=user_id)


def usage_router(service: UsageService, require_master: Callable[..., Any]) -> APIRouter:
    router = APIRouter(
        prefix="/v1/usage",
        tags=["usage"],
        dependencies=[Depends(require_master), Depends(no_nul_in_url)],
        responses=DATABASE_UNAVAILABLE,
    )
    invalid: dict[int | str, dict[str, Any]] = {
        400: {"description": "Invalid filter or page bounds"}
    }

    @router.get("", response_model=list[UsageRowOut], responses=invalid)
    async def list_usage(
        where: Annotated[UsageFilter, Depends(usage_filter)],
        skip: Skip = 0,
        limit: Limit = 100,
    ) -> list[UsageRowView]:
        """Usage rows, newest first."""
        return await service.list_rows(where, Page(skip, limit))

    @router.get("/summary", response_model=UsageSummaryOut, responses=invalid)
    async def summarize_usage(
        where: Annotated[UsageFilter, Depends(usage_filter)],
        group_by_time: Annotated[
            Literal["day", "hour"], Query(description="Series bucket (UTC)")
        ] = "day",
    ) -> UsageSummary:
        """Totals, breakdowns by model, user, key, provider and status, and a time series."""
        return await service.summary(where, group_by_time)

    return router
