"""The management API as one in-process app, shared by the ``test_management_*`` modules.

``management_app(database_url)`` wires every management router onto a real database
(SQLite or PostgreSQL, per the ``database_url`` fixture) with the app-wide error
handlers, a recording ``ChangeListener`` and a trivial master-key check. The tests in
this module cover what is common to all routers: auth and the OpenAPI declarations.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.testclient import TestClient

from otari_gateway.api.budgets import budgets_router
from otari_gateway.api.errors import EXCEPTION_HANDLERS
from otari_gateway.api.keys import keys_router
from otari_gateway.api.pricing import pricing_router
from otari_gateway.api.usage import usage_router
from otari_gateway.api.users import users_router
from otari_gateway.control.budgets import BudgetService
from otari_gateway.control.keys import KeyService
from otari_gateway.control.pricing import PricingService
from otari_gateway.control.usage import UsageService
from otari_gateway.control.users import UserService
from otari_gateway.errors import AuthenticationFailed, PermissionDenied
from otari_gateway.store import usage_repo
from otari_gateway.store.database import Database
from otari_gateway.store.models import UsageLog
from otari_gateway.store.types import utcnow

T = TypeVar("T")
MASTER = "sk-otari-test-master"
READER = "sk-otari-test-reader"
MASTER_HEADERS = {"Authorization": f"Bearer {MASTER}"}
READER_HEADERS = {"Authorization": f"Bearer {READER}"}


@dataclass
class RecordingListener:
    calls: list[str] = field(default_factory=list)

    def keys_changed(self) -> None:
        self.calls.append("keys")

    def users_changed(self) -> None:
        self.calls.append("users")

    def pricing_changed(self) -> None:
        self.calls.append("pricing")


def require_master(request: Request) -> None:
    token = request.headers.get("authorization", "")
    if token == f"Bearer {READER}":
        raise PermissionDenied("this endpoint needs the master key")
    if token != f"Bearer {MASTER}":
        raise AuthenticationFailed("Invalid API key")


def require_caller(request: Request) -> None:
    if request.headers.get("authorization", "") not in (f"Bearer {MASTER}", f"Bearer {READER}"):
        raise AuthenticationFailed("Invalid API key")


@dataclass
class Management:
    client: TestClient
    db: Database
    changes: RecordingListener

    def session(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one committed session, on the app's own event loop."""

        async def call() -> T:
            async with self.db.session() as session:
                return await work(session)

        assert self.client.portal is not None
        return self.client.portal.call(call)

    def ok(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send with the master key (and any ``headers``); return the JSON body of a 200."""
        headers = {**MASTER_HEADERS, **kwargs.pop("headers", {})}
        response = self.client.request(method, url, headers=headers, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def error(self, status: int, method: str, url: str, **kwargs: Any) -> str:
        """Send with the master key, expect ``status`` in the OpenAI envelope; the message."""
        response = self.client.request(method, url, headers=MASTER_HEADERS, **kwargs)
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error"}, body
        return str(body["error"]["message"])


def usage_log(**fields: Any) -> UsageLog:
    """A usage row with plausible defaults; ``fields`` override them."""
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "user_id": "alice",
        "api_key_id": None,
        "timestamp": utcnow(),
        "model": "gpt-4o-mini",
        "provider": "openai",
        "endpoint": "/v1/chat/completions",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost": Decimal("0.000001"),
        "status": "success",
        "error_message": None,
        "status_code": 200,
        "latency_ms": 12,
    }
    values.update(fields)
    return UsageLog(**values)


def add_usage(api: Management, *rows: UsageLog) -> None:
    async def insert(session: AsyncSession) -> None:
        usage_repo.add_usage_rows(session, rows)

    api.session(insert)


def is_utc_iso(value: str) -> bool:
    """An ISO 8601 instant that carries its offset (``Z`` or ``+00:00``)."""
    return datetime.fromisoformat(value).utcoffset() == timedelta(0)


def build_app(
    db: Database, changes: RecordingListener, prices: dict[str, dict[str, Any]] | None = None
) -> FastAPI:
    app = FastAPI(exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.include_router(keys_router(KeyService(db, changes), require_master))
    app.include_router(users_router(UserService(db, changes), require_master))
    app.include_router(budgets_router(BudgetService(db, changes), require_master))
    pricing = PricingService(db, changes, prices)
    app.include_router(pricing_router(pricing, require_master, require_caller))
    app.include_router(usage_router(UsageService(db), require_master))
    return app


@contextmanager
def management_app(
    database_url: str, prices: dict[str, dict[str, Any]] | None = None
) -> Iterator[Management]:
    """The management routers on ``database_url``; ``prices`` is a config ``pricing:`` block."""
    db = Database(database_url)
    changes = RecordingListener()
    with TestClient(build_app(db, changes, prices)) as client:
        try:
            yield Management(client, db, changes)
        finally:
            assert client.portal is not None
            client.portal.call(db.aclose)


ROUTES = [
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys"),
    ("GET", "/v1/keys/some-id"),
    ("PATCH", "/v1/keys/some-id"),
    ("POST", "/v1/keys/some-id/rotate"),
    ("DELETE", "/v1/keys/some-id"),
    ("POST", "/v1/users"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/u"),
    ("PATCH", "/v1/users/u"),
    ("DELETE", "/v1/users/u"),
    ("GET", "/v1/users/u/usage"),
    ("POST", "/v1/budgets"),
    ("GET", "/v1/budgets"),
    ("GET", "/v1/budgets/b"),
    ("PATCH", "/v1/budgets/b"),
    ("DELETE", "/v1/budgets/b"),
    ("GET", "/v1/budgets/b/reset-logs"),
    ("POST", "/v1/pricing"),
    ("DELETE", "/v1/pricing/openai:gpt-4o"),
    ("GET", "/v1/usage"),
    ("GET", "/v1/usage/summary"),
]


def test_every_management_route_needs_the_master_key(database_url: str) -> None:
    with management_app(database_url) as api:
        for method, url in ROUTES:
            anonymous = api.client.request(method, url, json={})
            assert anonymous.status_code == 401, (method, url)
            assert anonymous.json()["error"]["type"] == "authentication_error"
            reader = api.client.request(method, url, json={}, headers=READER_HEADERS)
            assert reader.status_code == 403, (method, url)
        assert api.changes.calls == []


def test_pricing_reads_are_open_to_any_valid_key(database_url: str) -> None:
    with management_app(database_url) as api:
        api.ok(
            "POST", "/v1/pricing", json={"model_key": "openai:gpt-4o", "input_price_per_million": 1}
        )
        listed = api.client.get("/v1/pricing", headers=READER_HEADERS)
        assert listed.status_code == 200
        assert [row["model_key"] for row in listed.json()] == ["openai:gpt-4o"]
        one = api.client.get("/v1/pricing/openai:gpt-4o", headers=READER_HEADERS)
        assert one.status_code == 200
        assert api.client.get("/v1/pricing").status_code == 401


def test_openapi_documents_bodies_responses_and_errors(database_url: str) -> None:
    with management_app(database_url) as api:
        schema = api.client.get("/openapi.json").json()
    paths = schema["paths"]
    create_key = paths["/v1/keys"]["post"]
    assert create_key["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "KeyCreateIn"
    )
    assert "200" in create_key["responses"] and "400" in create_key["responses"]
    assert "404" in paths["/v1/keys/{key_id}"]["get"]["responses"]
    assert "409" in paths["/v1/users"]["post"]["responses"]
    assert "409" in paths["/v1/budgets/{budget_id}"]["delete"]["responses"]
    assert "/v1/pricing/{model_key}" in paths
    components = schema["components"]["schemas"]
    for name in ("KeyOut", "CreatedKeyOut", "UserOut", "BudgetOut", "PriceOut", "UsageRowOut"):
        assert name in components, name
    assert components["KeyOut"]["properties"]["spend"]["type"] == "number"
    assert "key" not in components["KeyOut"]["properties"]


OUT_OF_RANGE = "9999-12-31T23:59:59-05:00"
BAD_INPUTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/users", {"json": {"user_id": "nul\x00byte"}}),
    ("POST", "/v1/users", {"json": {"user_id": "team/alice"}}),
    ("POST", "/v1/keys", {"json": {"key_name": "nul\x00byte"}}),
    ("POST", "/v1/keys", {"json": {"user_id": "u" * 256}}),
    ("POST", "/v1/keys", {"json": {"expires_at": OUT_OF_RANGE}}),
    ("POST", "/v1/pricing", {"json": {"model_key": "openai:m", "effective_at": OUT_OF_RANGE}}),
    ("GET", "/v1/keys/%00", {}),
    ("GET", "/v1/keys?skip=9223372036854775808", {}),
    ("GET", "/v1/users?skip=100000000000000000000", {}),
    ("GET", "/v1/usage?user_id=a%00b", {}),
    ("GET", f"/v1/usage?start_date={OUT_OF_RANGE}", {}),
    ("GET", "/v1/usage?start_date=0001-01-01T00:00:00%2B01:00", {}),
    ("GET", "/v1/usage?status=bogus", {}),
]


@pytest.mark.parametrize(("method", "url", "kwargs"), BAD_INPUTS)
def test_inputs_no_database_can_hold_are_a_400(
    database_url: str, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    # NUL and out-of-range values used to reach the database: a 500 on PostgreSQL (and for
    # dates and offsets on both), where a client error names what is wrong.
    with management_app(database_url) as api:
        message = api.error(400, method, url, **kwargs)
        assert "internal" not in message


def test_a_bare_end_date_at_the_end_of_time_is_accepted(database_url: str) -> None:
    with management_app(database_url) as api:
        add_usage(api, usage_log())
        assert len(api.ok("GET", "/v1/usage?end_date=9999-12-31")) == 1


def test_an_absent_body_means_an_empty_object(database_url: str) -> None:
    # Every field of these bodies is optional, yet no body was a 400 "Field required".
    with management_app(database_url) as api:
        assert api.ok("POST", "/v1/keys")["user_id"] == "default"
        assert api.ok("POST", "/v1/budgets")["max_budget"] is None
        key = api.ok("POST", "/v1/keys", content=b"", headers={"Content-Type": "application/json"})
        assert api.ok("PATCH", f"/v1/keys/{key['id']}")["is_active"] is True
        response = api.client.post("/v1/users", headers=MASTER_HEADERS)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "user_id: Field required"
        assert response.json()["error"]["param"] == "user_id"


def test_a_field_error_names_the_field_as_param(database_url: str) -> None:
    with management_app(database_url) as api:
        response = api.client.post("/v1/keys", json={"rpm_limit": 0}, headers=MASTER_HEADERS)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "rpm_limit"
        assert error["message"].startswith("rpm_limit: ")


JSON_HEADERS = {**MASTER_HEADERS, "Content-Type": "application/json"}
TEXT_HEADERS = {**MASTER_HEADERS, "Content-Type": "text/plain"}


@pytest.mark.parametrize("headers", [JSON_HEADERS, TEXT_HEADERS, MASTER_HEADERS])
def test_a_body_that_is_not_json_says_so(database_url: str, headers: dict[str, str]) -> None:
    # Was "1: JSON decode error": a character offset presented as a field name.
    with management_app(database_url) as api:
        response = api.client.post("/v1/budgets", content=b'{"name": ', headers=headers)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["message"].startswith("the request body is not valid JSON: "), error
        assert "character 9" in error["message"]
        assert error["param"] is None and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("headers", [TEXT_HEADERS, MASTER_HEADERS])
def test_a_json_object_is_read_whatever_its_content_type(
    database_url: str, headers: dict[str, str]
) -> None:
    # Was "Input should be a valid dictionary or object to extract fields from".
    with management_app(database_url) as api:
        created = api.ok("POST", "/v1/budgets", content=b'{"name": "team"}', headers=headers)
        assert created["name"] == "team"


@pytest.mark.parametrize("body", [b"[]", b'"name"', b"3", b"null"])
def test_a_body_that_is_not_an_object_says_so(database_url: str, body: bytes) -> None:
    with management_app(database_url) as api:
        for headers in (JSON_HEADERS, TEXT_HEADERS):
            response = api.client.post("/v1/keys", content=body, headers=headers)
            assert response.status_code == 400, response.text
            message = response.json()["error"]["message"]
            assert message == "the request body must be a JSON object", message
        assert api.ok("GET", "/v1/keys") == []
