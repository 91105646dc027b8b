"""``/v1/users`` on SQLite and PostgreSQL: create, conflicts, budgets and their periods,
soft delete (keys deactivated), revival, and a user's usage rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.control.users import NewUser, UserService, UserView
from otari_gateway.errors import Conflict
from otari_gateway.store import users_repo
from otari_gateway.store.models import User
from tests.integration.test_management_app import (
    MASTER_HEADERS,
    Management,
    add_usage,
    is_utc_iso,
    management_app,
    usage_log,
)

USER_FIELDS = {
    "user_id",
    "alias",
    "spend",
    "reserved",
    "budget_id",
    "allowed_models",
    "budget_started_at",
    "next_budget_reset_at",
    "blocked",
    "created_at",
    "updated_at",
    "metadata",
}


@pytest.fixture
def api(database_url: str) -> Iterator[Management]:
    with management_app(database_url) as management:
        yield management


def user_row(api: Management, user_id: str) -> User | None:
    async def find(session: AsyncSession) -> User | None:
        return await users_repo.get_user(session, user_id)

    return api.session(find)


def set_spend(api: Management, user_id: str, spend: str) -> None:
    async def write(session: AsyncSession) -> None:
        user = await users_repo.get_user(session, user_id)
        assert user is not None
        user.spend = Decimal(spend)

    api.session(write)


def budget(api: Management, **fields: Any) -> str:
    return str(api.ok("POST", "/v1/budgets", json=fields)["budget_id"])


def test_create_returns_the_full_user(api: Management) -> None:
    body = {
        "user_id": "alice",
        "alias": "Alice",
        "blocked": True,
        "allowed_models": ["openai:*"],
        "metadata": {"team": "ml"},
    }
    created = api.ok("POST", "/v1/users", json=body)
    assert set(created) == USER_FIELDS
    assert {name: created[name] for name in body} == body
    assert (created["spend"], created["reserved"]) == (0, 0)
    assert created["budget_id"] is None and created["budget_started_at"] is None
    assert is_utc_iso(created["created_at"]) and is_utc_iso(created["updated_at"])
    assert api.ok("GET", "/v1/users/alice") == created
    assert api.changes.calls == ["users"]


def test_create_twice_is_409(api: Management) -> None:
    api.ok("POST", "/v1/users", json={"user_id": "alice"})
    message = api.error(409, "POST", "/v1/users", json={"user_id": "alice"})
    assert message == "User with id 'alice' already exists"
    assert api.changes.calls == ["users"]


def test_create_with_an_unknown_budget_is_404(api: Management) -> None:
    message = api.error(404, "POST", "/v1/users", json={"user_id": "a", "budget_id": "nope"})
    assert message == "Budget with id 'nope' not found"
    api.error(404, "GET", "/v1/users/a")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"user_id": ""},
        {"user_id": "a", "allowed_models": ["no-colon"]},
        {"user_id": "a", "blocked": []},
        {"user_id": "a", "alias": "x" * 256},
        {"user_id": "a", "metadata": [1]},
    ],
)
def test_create_rejects_bad_input(api: Management, body: dict[str, Any]) -> None:
    api.error(400, "POST", "/v1/users", json=body)
    assert api.ok("GET", "/v1/users") == []


def test_a_budget_starts_its_period_when_assigned(api: Management) -> None:
    rolling = budget(api, max_budget=10, budget_duration_sec=3600)
    monthly = budget(api, reset_alignment="calendar_month")
    user = api.ok("POST", "/v1/users", json={"user_id": "a", "budget_id": rolling})
    started = datetime.fromisoformat(user["budget_started_at"])
    assert datetime.fromisoformat(user["next_budget_reset_at"]) - started == timedelta(hours=1)

    moved = api.ok("PATCH", "/v1/users/a", json={"budget_id": monthly})
    reset = datetime.fromisoformat(moved["next_budget_reset_at"])
    assert reset.tzinfo is not None and reset.utcoffset() == timedelta(0)
    assert (reset.day, reset.hour, reset.minute) == (1, 0, 0)
    assert reset > datetime.now(UTC)
    assert is_utc_iso(moved["budget_started_at"])

    detached = api.ok("PATCH", "/v1/users/a", json={"budget_id": None})
    assert detached["budget_id"] is None
    assert detached["budget_started_at"] is None and detached["next_budget_reset_at"] is None


def test_list_skips_deleted_users_and_pages(api: Management) -> None:
    for name in ("a", "b", "c"):
        api.ok("POST", "/v1/users", json={"user_id": name})
    assert api.client.delete("/v1/users/b", headers=MASTER_HEADERS).status_code == 204
    assert [u["user_id"] for u in api.ok("GET", "/v1/users")] == ["a", "c"]
    assert [u["user_id"] for u in api.ok("GET", "/v1/users?skip=1&limit=1")] == ["c"]
    for query in ("limit=0", "limit=1001", "skip=-1"):
        api.error(400, "GET", f"/v1/users?{query}")


def test_patch_changes_only_what_is_sent(api: Management) -> None:
    api.ok(
        "POST",
        "/v1/users",
        json={"user_id": "a", "alias": "A", "allowed_models": ["openai:*"], "metadata": {"k": 1}},
    )
    api.changes.calls.clear()
    patched = api.ok("PATCH", "/v1/users/a", json={"blocked": True})
    assert patched["blocked"] is True and patched["alias"] == "A"
    assert patched["allowed_models"] == ["openai:*"] and patched["metadata"] == {"k": 1}
    patched = api.ok(
        "PATCH", "/v1/users/a", json={"alias": None, "allowed_models": [], "metadata": {}}
    )
    assert patched["alias"] is None and patched["allowed_models"] == []
    assert patched["metadata"] == {} and patched["blocked"] is True
    assert patched["updated_at"] >= patched["created_at"]
    assert api.changes.calls == ["users", "users"]

    assert api.error(404, "PATCH", "/v1/users/a", json={"budget_id": "nope"}).startswith("Budget")
    assert api.error(404, "PATCH", "/v1/users/zed", json={}) == "User with id 'zed' not found"
    api.error(400, "PATCH", "/v1/users/a", json={"allowed_models": ["bad"]})
    assert api.changes.calls == ["users", "users"]


def test_delete_is_soft_and_deactivates_the_users_keys(api: Management) -> None:
    api.ok("POST", "/v1/users", json={"user_id": "a"})
    key = api.ok("POST", "/v1/keys", json={"user_id": "a"})
    other = api.ok("POST", "/v1/keys", json={"user_id": "b"})
    add_usage(api, usage_log(id="u1", user_id="a", api_key_id=key["id"]))
    api.changes.calls.clear()

    response = api.client.delete("/v1/users/a", headers=MASTER_HEADERS)
    assert response.status_code == 204 and response.content == b""
    assert sorted(api.changes.calls) == ["keys", "users"]
    assert api.error(404, "GET", "/v1/users/a") == "User with id 'a' not found"
    api.error(404, "DELETE", "/v1/users/a")
    row = user_row(api, "a")
    assert row is not None and row.deleted_at is not None
    assert api.ok("GET", f"/v1/keys/{key['id']}")["is_active"] is False
    assert api.ok("GET", f"/v1/keys/{other['id']}")["is_active"] is True
    assert [r["id"] for r in api.ok("GET", "/v1/usage?user_id=a")] == ["u1"]


def test_recreating_a_deleted_user_revives_it_with_zero_spend(api: Management) -> None:
    api.ok("POST", "/v1/users", json={"user_id": "a", "alias": "old", "blocked": True})
    key = api.ok("POST", "/v1/keys", json={"user_id": "a"})
    set_spend(api, "a", "4.250001")
    assert api.ok("GET", "/v1/users/a")["spend"] == 4.250001
    api.client.delete("/v1/users/a", headers=MASTER_HEADERS)

    revived = api.ok("POST", "/v1/users", json={"user_id": "a", "alias": "new"})
    assert (revived["alias"], revived["blocked"], revived["spend"]) == ("new", False, 0)
    assert api.ok("GET", f"/v1/keys/{key['id']}")["is_active"] is False
    row = user_row(api, "a")
    assert row is not None and row.deleted_at is None and row.spend == Decimal("0")


def test_user_usage_lists_only_that_users_rows(api: Management) -> None:
    api.ok("POST", "/v1/users", json={"user_id": "a"})
    now = datetime.now(UTC)
    add_usage(
        api,
        usage_log(id="a1", user_id="a", timestamp=now - timedelta(hours=2)),
        usage_log(id="a2", user_id="a", timestamp=now - timedelta(hours=1), status="error"),
        usage_log(id="a3", user_id="a", timestamp=now, model="gpt-4o"),
        usage_log(id="b1", user_id="b", timestamp=now),
    )
    assert [r["id"] for r in api.ok("GET", "/v1/users/a/usage")] == ["a3", "a2", "a1"]
    assert [r["id"] for r in api.ok("GET", "/v1/users/a/usage?status=error")] == ["a2"]
    assert [r["id"] for r in api.ok("GET", "/v1/users/a/usage?model=gpt-4o")] == ["a3"]
    assert [r["id"] for r in api.ok("GET", "/v1/users/a/usage?skip=1&limit=1")] == ["a2"]
    since = (now - timedelta(minutes=90)).isoformat()
    assert [r["id"] for r in api.ok("GET", "/v1/users/a/usage", params={"start_date": since})] == [
        "a3",
        "a2",
    ]
    api.error(400, "GET", "/v1/users/a/usage?start_date=yesterday")
    api.error(400, "GET", "/v1/users/a/usage?limit=1001")
    assert api.error(404, "GET", "/v1/users/b/usage") == "User with id 'b' not found"


def test_concurrent_creates_of_one_id_give_one_user_and_conflicts(api: Management) -> None:
    service = UserService(api.db, api.changes)

    async def race() -> list[object]:
        outcomes: list[object] = []

        async def create() -> None:
            try:
                outcomes.append(await service.create(NewUser(user_id="racer")))
            except Conflict as conflict:
                outcomes.append(conflict)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(create)
        return outcomes

    assert api.client.portal is not None
    outcomes = api.client.portal.call(race)
    assert sum(isinstance(outcome, UserView) for outcome in outcomes) == 1
    assert sum(isinstance(outcome, Conflict) for outcome in outcomes) == 4
    assert [u["user_id"] for u in api.ok("GET", "/v1/users")] == ["racer"]


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "false", "on"])
def test_blocked_must_be_a_json_boolean(api: Management, value: object) -> None:
    # Pydantic's lax mode read "yes" (and 1, "on" …) as true: a typo could block a user.
    assert "blocked" in api.error(400, "POST", "/v1/users", json={"user_id": "a", "blocked": value})
    api.ok("POST", "/v1/users", json={"user_id": "a"})
    assert "blocked" in api.error(400, "PATCH", "/v1/users/a", json={"blocked": value})
    assert api.ok("GET", "/v1/users/a")["blocked"] is False


def test_a_new_user_is_created_and_updated_at_one_instant(api: Management) -> None:
    # Two clock reads made updated_at a little earlier than created_at.
    created = api.ok("POST", "/v1/users", json={"user_id": "a"})
    assert created["updated_at"] == created["created_at"]
    api.ok("POST", "/v1/keys", json={"user_id": "via-key"})
    by_key = api.ok("GET", "/v1/users/via-key")
    assert by_key["updated_at"] == by_key["created_at"]
    row = user_row(api, "a")
    assert row is not None and row.updated_at == row.created_at
