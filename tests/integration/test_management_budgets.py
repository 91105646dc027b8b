"""``/v1/budgets`` on SQLite and PostgreSQL: periods, exact aggregates over live users,
retiming on a cadence change, delete refused while referenced, and reset logs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.store import budgets_repo, users_repo
from otari_gateway.store.models import BudgetLease, BudgetResetLog
from tests.integration.test_management_app import (
    MASTER_HEADERS,
    Management,
    is_utc_iso,
    management_app,
)

BUDGET_FIELDS = {
    "budget_id",
    "name",
    "max_budget",
    "budget_duration_sec",
    "reset_alignment",
    "created_at",
    "updated_at",
    "user_count",
    "total_spend",
    "total_reserved",
}


@pytest.fixture
def api(database_url: str) -> Iterator[Management]:
    with management_app(database_url) as management:
        yield management


def set_money(api: Management, user_id: str, spend: str, reserved: str = "0") -> None:
    async def write(session: AsyncSession) -> None:
        user = await users_repo.get_user(session, user_id)
        assert user is not None
        user.spend, user.reserved = Decimal(spend), Decimal(reserved)
        if Decimal(reserved):
            # What in-flight requests hold is what their leases report.
            session.add(
                BudgetLease(
                    id=f"lease-{user_id}",
                    user_id=user_id,
                    holder="test",
                    amount=Decimal(reserved),
                    held=Decimal(reserved),
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                )
            )

    api.session(write)


def test_create_and_read(api: Management) -> None:
    created = api.ok(
        "POST", "/v1/budgets", json={"name": "team", "max_budget": 25.5, "budget_duration_sec": 60}
    )
    assert set(created) == BUDGET_FIELDS
    assert (created["name"], created["max_budget"], created["budget_duration_sec"]) == (
        "team",
        25.5,
        60,
    )
    assert created["reset_alignment"] is None
    assert (created["user_count"], created["total_spend"], created["total_reserved"]) == (0, 0, 0)
    assert is_utc_iso(created["created_at"])
    assert api.ok("GET", f"/v1/budgets/{created['budget_id']}") == created

    uncapped = api.ok("POST", "/v1/budgets", json={"reset_alignment": "calendar_week"})
    assert uncapped["max_budget"] is None and uncapped["reset_alignment"] == "calendar_week"
    never = api.ok("POST", "/v1/budgets", json={})
    assert never["budget_duration_sec"] is None and never["reset_alignment"] is None
    listed = [b["budget_id"] for b in api.ok("GET", "/v1/budgets")]
    assert listed == [created["budget_id"], uncapped["budget_id"], never["budget_id"]]
    assert [b["budget_id"] for b in api.ok("GET", "/v1/budgets?skip=2&limit=5")] == listed[2:]
    for query in ("limit=0", "limit=1001", "skip=-1"):
        api.error(400, "GET", f"/v1/budgets?{query}")
    assert api.changes.calls == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"budget_duration_sec": 60, "reset_alignment": "calendar_day"}, "not both"),
        ({"reset_alignment": "fortnightly"}, "reset_alignment"),
        ({"max_budget": -0.01}, "max_budget"),
        ({"budget_duration_sec": 0}, "budget_duration_sec"),
        ({"budget_duration_sec": 2**31}, "budget_duration_sec"),
    ],
)
def test_create_rejects_bad_input(api: Management, body: dict[str, Any], fragment: str) -> None:
    assert fragment in api.error(400, "POST", "/v1/budgets", json=body)
    assert api.ok("GET", "/v1/budgets") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/reset-logs")],
)
def test_unknown_budget_is_404(api: Management, method: str, path: str) -> None:
    kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
    message = api.error(404, method, f"/v1/budgets/nope{path}", **kwargs)
    assert message == "Budget with id 'nope' not found"


def test_aggregates_sum_live_users_exactly(api: Management) -> None:
    budget_id = api.ok("POST", "/v1/budgets", json={"max_budget": 1})["budget_id"]
    for user_id, spend, reserved in (
        ("a", "0.1", "0.000001"),
        ("b", "0.2", "0.000002"),
        ("c", "5", "5"),
    ):
        api.ok("POST", "/v1/users", json={"user_id": user_id, "budget_id": budget_id})
        set_money(api, user_id, spend, reserved)
    api.ok("POST", "/v1/users", json={"user_id": "other"})
    set_money(api, "other", "7")
    api.client.delete("/v1/users/c", headers=MASTER_HEADERS)

    shown = api.ok("GET", f"/v1/budgets/{budget_id}")
    assert shown["user_count"] == 2
    assert shown["total_spend"] == 0.3  # exactly 0.1 + 0.2, not 0.30000000000000004
    assert shown["total_reserved"] == 0.000003
    assert api.ok("GET", "/v1/budgets")[0]["total_spend"] == 0.3

    async def exact(session: AsyncSession) -> budgets_repo.BudgetTotals:
        return (await budgets_repo.totals(session, [budget_id]))[budget_id]

    assert api.session(exact) == budgets_repo.BudgetTotals(2, Decimal("0.3"), Decimal("0.000003"))


def test_patch_fields_and_cadence(api: Management) -> None:
    budget_id = api.ok(
        "POST", "/v1/budgets", json={"name": "n", "max_budget": 3, "budget_duration_sec": 3600}
    )["budget_id"]
    url = f"/v1/budgets/{budget_id}"
    api.ok("POST", "/v1/users", json={"user_id": "a", "budget_id": budget_id})
    api.changes.calls.clear()

    patched = api.ok("PATCH", url, json={"name": None, "max_budget": None})
    assert patched["name"] is None and patched["max_budget"] is None
    assert patched["budget_duration_sec"] == 3600
    assert "not both" in api.error(400, "PATCH", url, json={"reset_alignment": "calendar_day"})

    daily = api.ok(
        "PATCH", url, json={"budget_duration_sec": None, "reset_alignment": "calendar_day"}
    )
    assert (daily["budget_duration_sec"], daily["reset_alignment"]) == (None, "calendar_day")
    user = api.ok("GET", "/v1/users/a")
    reset = datetime.fromisoformat(user["next_budget_reset_at"])
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    assert reset == tomorrow
    assert api.changes.calls == ["users", "users"]

    capped = api.ok("PATCH", url, json={"max_budget": "0.000001"})
    assert capped["max_budget"] == 0.000001 and capped["reset_alignment"] == "calendar_day"
    api.error(400, "PATCH", url, json={"max_budget": -1})


def test_delete_is_refused_while_live_users_reference_it(api: Management) -> None:
    budget_id = api.ok("POST", "/v1/budgets", json={})["budget_id"]
    url = f"/v1/budgets/{budget_id}"
    api.ok("POST", "/v1/users", json={"user_id": "a", "budget_id": budget_id})
    api.ok("POST", "/v1/users", json={"user_id": "b", "budget_id": budget_id})

    assert "assigned to 2 user(s)" in api.error(409, "DELETE", url)
    api.ok("PATCH", "/v1/users/a", json={"budget_id": None})
    assert "assigned to 1 user(s)" in api.error(409, "DELETE", url)
    # A soft-deleted user still names the budget (the FK is RESTRICT) but no longer holds it.
    assert api.client.delete("/v1/users/b", headers=MASTER_HEADERS).status_code == 204
    response = api.client.delete(url, headers=MASTER_HEADERS)
    assert response.status_code == 204 and response.content == b""
    api.error(404, "GET", url)
    revived = api.ok("POST", "/v1/users", json={"user_id": "b"})
    assert revived["budget_id"] is None


def test_reset_logs_newest_first(api: Management) -> None:
    budget_id = api.ok("POST", "/v1/budgets", json={"budget_duration_sec": 60})["budget_id"]
    other = api.ok("POST", "/v1/budgets", json={})["budget_id"]
    start = datetime(2026, 1, 1, tzinfo=UTC)

    async def write(session: AsyncSession) -> None:
        for n in range(3):
            budgets_repo.add_reset_log(
                session,
                BudgetResetLog(
                    id=f"log{n}",
                    budget_id=budget_id,
                    user_id="a",
                    previous_spend=Decimal(n) / 1000,
                    reset_at=start + timedelta(minutes=n),
                    next_reset_at=start + timedelta(minutes=n + 1),
                ),
            )
        budgets_repo.add_reset_log(
            session,
            BudgetResetLog(id="x", budget_id=other, previous_spend=Decimal(0), reset_at=start),
        )

    api.session(write)
    logs = api.ok("GET", f"/v1/budgets/{budget_id}/reset-logs")
    assert [log["id"] for log in logs] == ["log2", "log1", "log0"]
    assert logs[0]["previous_spend"] == 0.002 and logs[0]["user_id"] == "a"
    assert set(logs[0]) == {
        "id",
        "budget_id",
        "user_id",
        "api_key_id",
        "previous_spend",
        "reset_at",
        "next_reset_at",
    }
    assert is_utc_iso(logs[0]["reset_at"]) and logs[0]["reset_at"].startswith("2026-01-01T00:02")
    paged = api.ok("GET", f"/v1/budgets/{budget_id}/reset-logs?skip=1&limit=1")
    assert [log["id"] for log in paged] == ["log1"]
    api.error(400, "GET", f"/v1/budgets/{budget_id}/reset-logs?limit=0")


def test_a_new_budget_is_created_and_updated_at_one_instant(api: Management) -> None:
    created = api.ok("POST", "/v1/budgets", json={})
    assert created["updated_at"] == created["created_at"]
