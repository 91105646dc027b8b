"""``/v1/keys`` on SQLite and PostgreSQL: secrets shown once, hashes stored, rotation,
deletion keeping usage, validation, paging and change notifications."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.control.keys import CreatedKey, KeyService, NewKey, hash_key
from otari_gateway.store import keys_repo
from otari_gateway.store.models import ApiKey, UsageLog
from otari_gateway.store.types import utcnow
from tests.integration.test_management_app import (
    MASTER_HEADERS,
    Management,
    add_usage,
    is_utc_iso,
    management_app,
    usage_log,
)


@pytest.fixture
def api(database_url: str) -> Iterator[Management]:
    with management_app(database_url) as management:
        yield management


def by_hash(api: Management, secret: str) -> ApiKey | None:
    async def find(session: AsyncSession) -> ApiKey | None:
        return await keys_repo.find_by_hash(session, hash_key(secret))

    return api.session(find)


def key_row(api: Management, key_id: str) -> ApiKey | None:
    async def find(session: AsyncSession) -> ApiKey | None:
        return await keys_repo.get_key(session, key_id)

    return api.session(find)


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("sk-otari-abc") == hashlib.sha256(b"sk-otari-abc").hexdigest()


def test_create_shows_the_secret_once_and_stores_only_its_hash(api: Management) -> None:
    created = api.ok("POST", "/v1/keys", json={})
    secret = created["key"]
    assert secret.startswith("sk-otari-") and len(secret) > 40
    assert created["key_prefix"] == secret[:12]
    assert created["user_id"] == "default"
    assert created["is_active"] is True
    assert created["allowed_models"] is None
    assert created["metadata"] == {}
    assert created["spend"] == 0
    assert "last_used_at" not in created
    assert is_utc_iso(created["created_at"])

    row = by_hash(api, secret)
    assert row is not None and row.id == created["id"]
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = [getattr(row, attribute.key) for attribute in inspect(ApiKey).column_attrs]
    assert secret not in [str(value) for value in stored]

    shown = api.ok("GET", f"/v1/keys/{created['id']}")
    assert "key" not in shown and shown["last_used_at"] is None
    assert all("key" not in item for item in api.ok("GET", "/v1/keys"))
    assert api.ok("GET", "/v1/users/default")["user_id"] == "default"
    assert api.changes.calls == ["users", "keys"]


def test_create_for_a_named_user_with_every_field(api: Management) -> None:
    expires = (utcnow() + timedelta(days=3)).replace(tzinfo=None, microsecond=0)
    body = {
        "key_name": "ci",
        "user_id": "alice",
        "expires_at": expires.isoformat(),
        "allowed_models": ["openai:gpt-4o", "anthropic:*", "openai:gpt-4o-mini*"],
        "metadata": {"team": "ml", "n": 1},
        "max_budget": 12.345678,
        "budget_duration_sec": 3600,
        "rpm_limit": 10,
        "tpm_limit": 1000,
    }
    created = api.ok("POST", "/v1/keys", json=body)
    for name in ("key_name", "user_id", "allowed_models", "metadata", "budget_duration_sec"):
        assert created[name] == body[name]
    assert created["max_budget"] == 12.345678
    assert (created["rpm_limit"], created["tpm_limit"]) == (10, 1000)
    assert is_utc_iso(created["expires_at"])
    assert created["expires_at"].startswith(expires.isoformat())
    assert api.ok("GET", "/v1/users/alice")["user_id"] == "alice"

    row = key_row(api, created["id"])
    assert row is not None and row.max_budget == Decimal("12.345678")
    assert row.budget_started_at is not None and row.next_budget_reset_at is not None
    assert row.next_budget_reset_at - row.budget_started_at == timedelta(seconds=3600)

    again = api.ok("POST", "/v1/keys", json={"user_id": "alice"})
    assert again["user_id"] == "alice"
    assert api.changes.calls == ["users", "keys", "keys"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at must be in the future"),
        ({"allowed_models": ["gpt-4o"]}, "allowed_models entry 'gpt-4o'"),
        ({"allowed_models": ["openai:gpt*4o"]}, "allowed_models entry"),
        ({"allowed_models": [":gpt-4o"]}, "allowed_models entry"),
        ({"max_budget": -1}, "max_budget"),
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"budget_duration_sec": 0}, "budget_duration_sec"),
        ({"metadata": "x"}, "metadata"),
        ({"user_id": ""}, "user_id"),
    ],
)
def test_create_rejects_bad_input(api: Management, body: dict[str, object], fragment: str) -> None:
    assert fragment in api.error(400, "POST", "/v1/keys", json=body)
    assert api.changes.calls == []
    assert api.ok("GET", "/v1/keys") == []


def test_create_for_a_deleted_user_is_404_until_the_user_is_recreated(api: Management) -> None:
    # A deleted id is not an unknown one: minting a key must not quietly undo the delete
    # (the reference answers the same 404). POST /v1/users is the way back.
    api.ok("POST", "/v1/users", json={"user_id": "gone"})
    assert api.client.delete("/v1/users/gone", headers=MASTER_HEADERS).status_code == 204
    assert "has been deleted" in api.error(404, "POST", "/v1/keys", json={"user_id": "gone"})
    assert api.ok("GET", "/v1/keys") == []
    api.error(404, "GET", "/v1/users/gone")
    api.ok("POST", "/v1/users", json={"user_id": "gone"})
    assert api.ok("POST", "/v1/keys", json={"user_id": "gone"})["is_active"] is True


def test_list_pages_and_bounds(api: Management) -> None:
    ids = [api.ok("POST", "/v1/keys", json={"key_name": f"k{n}"})["id"] for n in range(3)]
    assert [item["id"] for item in api.ok("GET", "/v1/keys")] == ids
    assert [item["id"] for item in api.ok("GET", "/v1/keys?skip=1&limit=1")] == ids[1:2]
    assert api.ok("GET", "/v1/keys?skip=5") == []
    assert len(api.ok("GET", "/v1/keys?limit=1000")) == 3
    for query in ("limit=0", "limit=1001", "skip=-1", "limit=x"):
        assert api.error(400, "GET", f"/v1/keys?{query}")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("PATCH", ""), ("POST", "/rotate"), ("DELETE", "")],
)
def test_unknown_key_is_404(api: Management, method: str, path: str) -> None:
    kwargs: dict[str, Any] = {"json": {}} if method == "PATCH" else {}
    message = api.error(404, method, f"/v1/keys/nope{path}", **kwargs)
    assert message == "API key with id 'nope' not found"
    assert api.changes.calls == []


def test_patch_changes_only_what_is_sent(api: Management) -> None:
    created = api.ok(
        "POST",
        "/v1/keys",
        json={
            "key_name": "a",
            "allowed_models": ["openai:*"],
            "metadata": {"x": 1},
            "expires_at": (utcnow() + timedelta(days=1)).isoformat(),
            "rpm_limit": 5,
        },
    )
    url = f"/v1/keys/{created['id']}"
    api.changes.calls.clear()

    patched = api.ok("PATCH", url, json={"is_active": False, "key_name": "b"})
    assert (patched["is_active"], patched["key_name"]) == (False, "b")
    assert patched["allowed_models"] == ["openai:*"] and patched["rpm_limit"] == 5
    assert patched["metadata"] == {"x": 1} and patched["expires_at"] is not None

    cleared = api.ok(
        "PATCH",
        url,
        json={"allowed_models": None, "expires_at": None, "rpm_limit": None, "is_active": None},
    )
    assert cleared["allowed_models"] is None and cleared["expires_at"] is None
    assert cleared["rpm_limit"] is None and cleared["is_active"] is False
    assert cleared["key_name"] == "b"

    again = api.ok("PATCH", url, json={"is_active": True, "metadata": {"y": 2}, "tpm_limit": 9})
    assert (again["is_active"], again["metadata"], again["tpm_limit"]) == (True, {"y": 2}, 9)
    assert api.ok("GET", url) == again
    assert api.changes.calls == ["keys", "keys", "keys"]

    assert "allowed_models" in api.error(400, "PATCH", url, json={"allowed_models": ["x"]})
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    assert "future" in api.error(400, "PATCH", url, json={"expires_at": past})
    assert api.error(400, "PATCH", url, json={"tpm_limit": -3})
    assert api.changes.calls == ["keys", "keys", "keys"]


def test_patch_budget_duration_restarts_the_key_period(api: Management) -> None:
    created = api.ok("POST", "/v1/keys", json={})
    before = key_row(api, created["id"])
    assert before is not None and before.budget_started_at is None
    patched = api.ok(
        "PATCH", f"/v1/keys/{created['id']}", json={"max_budget": 5, "budget_duration_sec": 60}
    )
    assert (patched["max_budget"], patched["budget_duration_sec"]) == (5, 60)
    row = key_row(api, created["id"])
    assert row is not None and row.budget_started_at is not None
    assert row.next_budget_reset_at == row.budget_started_at + timedelta(seconds=60)


def test_rotate_replaces_the_secret_and_the_old_one_dies(api: Management) -> None:
    created = api.ok("POST", "/v1/keys", json={"key_name": "svc", "user_id": "bob"})
    api.changes.calls.clear()
    rotated = api.ok("POST", f"/v1/keys/{created['id']}/rotate")
    assert rotated["id"] == created["id"]
    assert (rotated["key_name"], rotated["user_id"]) == ("svc", "bob")
    assert rotated["key"] != created["key"] and rotated["key"].startswith("sk-otari-")
    assert rotated["key_prefix"] == rotated["key"][:12]
    assert by_hash(api, created["key"]) is None
    found = by_hash(api, rotated["key"])
    assert found is not None and found.id == created["id"]
    assert "key" not in api.ok("GET", f"/v1/keys/{created['id']}")
    assert api.changes.calls == ["keys"]


def test_delete_keeps_usage_rows_with_the_key_id_nulled(api: Management) -> None:
    created = api.ok("POST", "/v1/keys", json={"user_id": "alice"})
    kept = api.ok("POST", "/v1/keys", json={"user_id": "alice"})
    add_usage(
        api,
        usage_log(id="u1", api_key_id=created["id"]),
        usage_log(id="u2", api_key_id=created["id"]),
        usage_log(id="u3", api_key_id=kept["id"]),
    )
    api.changes.calls.clear()

    response = api.client.delete(f"/v1/keys/{created['id']}", headers=MASTER_HEADERS)
    assert response.status_code == 204 and response.content == b""
    assert api.changes.calls == ["keys"]
    api.error(404, "GET", f"/v1/keys/{created['id']}")
    assert by_hash(api, created["key"]) is None

    async def usage(session: AsyncSession) -> dict[str, str | None]:
        rows = await session.execute(select(UsageLog.id, UsageLog.api_key_id))
        return {row[0]: row[1] for row in rows}

    assert api.session(usage) == {"u1": None, "u2": None, "u3": kept["id"]}
    listed = {row["id"]: row["api_key_id"] for row in api.ok("GET", "/v1/usage")}
    assert listed == {"u1": None, "u2": None, "u3": kept["id"]}
    assert [item["id"] for item in api.ok("GET", "/v1/keys")] == [kept["id"]]


def test_concurrent_keys_for_a_new_user_create_it_once(api: Management) -> None:
    service = KeyService(api.db, api.changes)

    async def race() -> list[CreatedKey]:
        created: list[CreatedKey] = []

        async def mint() -> None:
            created.append(await service.create(NewKey(user_id="fresh")))

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(mint)
        return created

    assert api.client.portal is not None
    created = api.client.portal.call(race)
    assert len({key.key for key in created}) == 5
    assert [u["user_id"] for u in api.ok("GET", "/v1/users")] == ["fresh"]
    assert len(api.ok("GET", "/v1/keys")) == 5


def test_create_honours_is_active(api: Management) -> None:
    # is_active was not a create field: {"is_active": false} minted a live key.
    created = api.ok("POST", "/v1/keys", json={"is_active": False})
    assert created["is_active"] is False
    row = by_hash(api, created["key"])
    assert row is not None and row.is_active is False
    assert api.ok("GET", f"/v1/keys/{created['id']}")["is_active"] is False
    assert api.ok("POST", "/v1/keys", json={"is_active": True})["is_active"] is True


@pytest.mark.parametrize("value", ["no", "false", 0, 1, "off"])
def test_is_active_must_be_a_json_boolean(api: Management, value: object) -> None:
    assert "is_active" in api.error(400, "POST", "/v1/keys", json={"is_active": value})
    created = api.ok("POST", "/v1/keys", json={})
    url = f"/v1/keys/{created['id']}"
    assert "is_active" in api.error(400, "PATCH", url, json={"is_active": value})
    assert api.ok("GET", url)["is_active"] is True


def test_a_key_and_its_period_start_at_one_instant(api: Management) -> None:
    created = api.ok("POST", "/v1/keys", json={"max_budget": 1, "budget_duration_sec": 60})
    row = key_row(api, created["id"])
    assert row is not None and row.budget_started_at == row.created_at
