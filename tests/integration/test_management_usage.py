"""``/v1/usage`` on SQLite and PostgreSQL: rows newest first with every filter, and the
summary aggregated in SQL: exact money, breakdowns, UTC day and hour series."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.store import usage_repo
from tests.integration.test_management_app import (
    Management,
    add_usage,
    is_utc_iso,
    management_app,
    usage_log,
)

ROW_FIELDS = [
    "id",
    "user_id",
    "api_key_id",
    "timestamp",
    "model",
    "provider",
    "endpoint",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "status",
    "error_message",
    "status_code",
    "latency_ms",
]
DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
PLUS_TWO = timezone(timedelta(hours=2))


@pytest.fixture
def api(database_url: str) -> Iterator[Management]:
    with management_app(database_url) as management:
        api_ = management
        key = api_.ok("POST", "/v1/keys", json={"user_id": "alice"})["id"]
        add_usage(
            api_,
            usage_log(id="r1", timestamp=DAY1 + timedelta(hours=10, minutes=15), api_key_id=key),
            # 01:30 at +02:00 is 23:30 UTC on day 1: buckets are UTC.
            usage_log(
                id="r2",
                timestamp=datetime(2026, 3, 2, 1, 30, tzinfo=PLUS_TWO),
                api_key_id=key,
                model="gpt-4o",
            ),
            usage_log(
                id="r3",
                timestamp=DAY1 + timedelta(hours=23, minutes=59, seconds=59),
                user_id="bob",
                model="claude-sonnet-4-5",
                provider="anthropic",
                endpoint="/v1/messages",
                status="error",
                error_message="upstream 500",
                status_code=502,
                cost=Decimal("0"),
                prompt_tokens=0,
                completion_tokens=0,
                total_tokens=0,
            ),
            usage_log(
                id="r4",
                timestamp=DAY2 + timedelta(hours=5),
                user_id="bob",
                cost=Decimal("0.000001"),
            ),
            usage_log(
                id="r5",
                timestamp=DAY2 + timedelta(hours=5, minutes=59),
                user_id=None,
                cost=Decimal("1.234567"),
                prompt_tokens=100,
                completion_tokens=50,
                total_tokens=150,
                cache_read_tokens=7,
                cache_write_tokens=3,
                reasoning_tokens=20,
            ),
        )
        yield api_


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


def test_rows_newest_first_in_the_contract_shape(api: Management) -> None:
    rows = api.ok("GET", "/v1/usage")
    assert ids(rows) == ["r5", "r4", "r3", "r2", "r1"]
    assert list(rows[0]) == ROW_FIELDS
    assert rows[0]["timestamp"] in ("2026-03-02T05:59:00Z", "2026-03-02T05:59:00+00:00")
    assert all(is_utc_iso(row["timestamp"]) for row in rows)
    assert rows[0]["cost"] == 1.234567 and rows[1]["cost"] == 0.000001
    assert (rows[0]["cache_read_tokens"], rows[0]["cache_write_tokens"]) == (7, 3)
    assert [row["reasoning_tokens"] for row in rows] == [20, 0, 0, 0, 0]
    assert rows[2]["status_code"] == 502 and rows[2]["error_message"] == "upstream 500"
    assert rows[3]["timestamp"].startswith("2026-03-01T23:30:00")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"user_id": "bob"}, ["r4", "r3"]),
        ({"model": "gpt-4o"}, ["r2"]),
        ({"status": "error"}, ["r3"]),
        ({"start_date": "2026-03-02"}, ["r5", "r4"]),
        ({"end_date": "2026-03-01"}, ["r3", "r2", "r1"]),  # a bare date: the whole day
        ({"end_date": "2026-03-01T23:30:00"}, ["r1"]),  # exclusive, naive is UTC
        ({"start_date": "2026-03-02T01:30:00+02:00"}, ["r5", "r4", "r3", "r2"]),
        (
            {"start_date": "2026-03-01T12:00:00Z", "end_date": "2026-03-02T05:30:00Z"},
            ["r4", "r3", "r2"],
        ),
        ({"user_id": "alice", "model": "gpt-4o-mini"}, ["r1"]),
        ({"skip": 1, "limit": 2}, ["r4", "r3"]),
        ({"limit": 1000}, ["r5", "r4", "r3", "r2", "r1"]),
        ({"user_id": "nobody"}, []),
    ],
)
def test_filters(api: Management, query: dict[str, Any], expected: list[str]) -> None:
    assert ids(api.ok("GET", "/v1/usage", params=query)) == expected


def test_api_key_filter(api: Management) -> None:
    key = api.ok("GET", "/v1/keys")[0]["id"]
    assert ids(api.ok("GET", "/v1/usage", params={"api_key_id": key})) == ["r2", "r1"]


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 1001},
        {"skip": -1},
        {"start_date": "March"},
        {"end_date": "2026-13-01"},
    ],
)
def test_bad_filters_are_400(api: Management, query: dict[str, Any]) -> None:
    api.error(400, "GET", "/v1/usage", params=query)


def test_summary_totals_and_breakdowns_are_exact(api: Management) -> None:
    summary = api.ok("GET", "/v1/usage/summary")
    assert summary["total_requests"] == 5
    # r1, r2, r4 cost 0.000001 each: exactly 0.000003 plus r5's 1.234567.
    assert summary["total_cost"] == 1.23457
    assert (summary["total_tokens"], summary["prompt_tokens"], summary["completion_tokens"]) == (
        195,
        130,
        65,
    )
    assert summary["reasoning_tokens"] == 20
    assert summary["error_count"] == 1
    assert summary["by_model"][0] == {
        "model": "gpt-4o-mini",
        "provider": "openai",
        "requests": 3,
        "cost": 1.234569,
        "tokens": 180,
    }
    models = {(m["model"], m["provider"]): m["requests"] for m in summary["by_model"]}
    assert models == {
        ("gpt-4o-mini", "openai"): 3,
        ("gpt-4o", "openai"): 1,
        ("claude-sonnet-4-5", "anthropic"): 1,
    }
    users = {u["user_id"]: (u["requests"], u["cost"]) for u in summary["by_user"]}
    assert users == {None: (1, 1.234567), "alice": (2, 0.000002), "bob": (2, 0.000001)}
    keys = {k["api_key_id"]: k["requests"] for k in summary["by_api_key"]}
    assert sorted(keys.values()) == [2, 3] and keys[None] == 3
    providers = {p["provider"]: p["requests"] for p in summary["by_provider"]}
    assert providers == {"openai": 4, "anthropic": 1}
    statuses = {s["status"]: (s["requests"], s["tokens"]) for s in summary["by_status"]}
    assert statuses == {"success": (4, 195), "error": (1, 0)}


def test_summary_money_is_summed_exactly(api: Management) -> None:
    summary = api.ok("GET", "/v1/usage/summary", params={"user_id": "alice"})
    assert summary["total_cost"] == 0.000002
    summary = api.ok("GET", "/v1/usage/summary", params={"model": "gpt-4o-mini"})
    assert summary["total_cost"] == 1.234569
    small = api.ok("GET", "/v1/usage/summary", params={"end_date": "2026-03-02T05:30:00Z"})
    assert small["total_cost"] == 0.000003  # 3 × 0.000001, not 3.0000000000000004e-06

    async def exact(session: AsyncSession) -> Decimal:
        return (await usage_repo.totals(session, usage_repo.UsageFilter())).cost

    assert api.session(exact) == Decimal("1.234570")


def test_summary_series_by_utc_day_and_hour(api: Management) -> None:
    days = api.ok("GET", "/v1/usage/summary")["series"]
    assert [(d["period_start"][:19], d["requests"], d["cost"]) for d in days] == [
        ("2026-03-01T00:00:00", 3, 0.000002),
        ("2026-03-02T00:00:00", 2, 1.234568),
    ]
    assert all(is_utc_iso(d["period_start"]) for d in days)
    hours = api.ok("GET", "/v1/usage/summary", params={"group_by_time": "hour"})["series"]
    assert [(h["period_start"][:19], h["requests"], h["tokens"]) for h in hours] == [
        ("2026-03-01T10:00:00", 1, 15),
        ("2026-03-01T23:00:00", 2, 15),
        ("2026-03-02T05:00:00", 2, 165),
    ]
    api.error(400, "GET", "/v1/usage/summary", params={"group_by_time": "week"})


def test_series_ignores_the_database_session_time_zone(api: Management) -> None:
    if api.db.dialect != "postgresql":
        pytest.skip("SQLite has no session time zone")

    async def series(session: AsyncSession) -> list[usage_repo.Point]:
        await session.execute(text("SET LOCAL TIME ZONE 'Asia/Tokyo'"))
        return await usage_repo.series(session, usage_repo.UsageFilter(), "day")

    points = api.session(series)
    assert [(p.period_start, p.tally.requests) for p in points] == [(DAY1, 3), (DAY2, 2)]


def test_summary_filters_and_empty_results(api: Management) -> None:
    errors = api.ok("GET", "/v1/usage/summary", params={"status": "error"})
    assert (errors["total_requests"], errors["error_count"]) == (1, 1)
    assert [m["model"] for m in errors["by_model"]] == ["claude-sonnet-4-5"]
    empty = api.ok("GET", "/v1/usage/summary", params={"user_id": "nobody"})
    assert empty == {
        "total_requests": 0,
        "total_cost": 0,
        "total_tokens": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "reasoning_tokens": 0,
        "error_count": 0,
        "by_model": [],
        "by_user": [],
        "by_api_key": [],
        "by_provider": [],
        "by_status": [],
        "series": [],
    }
    api.error(400, "GET", "/v1/usage/summary", params={"start_date": "soon"})
