"""The management API with its database unreachable: a 503 in the OpenAI envelope that
says so, never a 500 "internal error", and nothing of the database URL in the body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import anyio
import asyncpg
import openai
import pytest
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from otari_gateway.store.availability import unreachable_reason
from tests.databases import POSTGRES_ADMIN, fresh_database
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import MASTER_KEY, create_key
from tests.integration.gateway_process import GatewayProcess, free_port
from tests.integration.test_management_app import (
    MASTER_HEADERS,
    ROUTES,
    Management,
    management_app,
)

SECRET = "outage-test-password"
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/users"): {"user_id": "u"},
    ("POST", "/v1/pricing"): {"model_key": "openai:gpt-4o", "input_price_per_million": 1},
}
READS = [("GET", "/v1/pricing"), ("GET", "/v1/pricing/openai:gpt-4o")]


def unreachable_url(database_url: str, tmp_path: Path) -> str:
    """The same engine, somewhere it cannot be reached."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'otari.db'}"
    return f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/otari"


def assert_unavailable(api: Management, url: str, forbidden: list[str]) -> None:
    for method, path in [*ROUTES, *READS]:
        response = api.client.request(
            method, path, json=BODIES.get((method, path), {}), headers=MASTER_HEADERS
        )
        assert response.status_code == 503, (method, path, response.text)
        assert response.json() == {
            "error": {
                "message": "the gateway's database is unavailable",
                "type": "server_error",
                "param": None,
                "code": "database_unavailable",
            }
        }
        for fragment in forbidden:
            assert fragment not in response.text


def test_every_management_route_is_a_503_when_the_database_is_unreachable(
    database_url: str, tmp_path: Path
) -> None:
    # Was a 500 "internal error" (and a crash in the log) for every route.
    url = unreachable_url(database_url, tmp_path)
    with management_app(url) as api:
        assert_unavailable(api, url, [url, SECRET, "no-such-directory", url.rsplit(":", 1)[-1]])
        assert api.changes.calls == []


def test_a_database_dropped_while_serving_is_a_503(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as url, management_app(url) as api:
        api.ok("POST", "/v1/keys")
        name = url.rsplit("/", 1)[-1]

        async def drop() -> None:
            connection = await asyncpg.connect(POSTGRES_ADMIN + "/postgres")
            try:
                await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            finally:
                await connection.close()

        anyio.run(drop)
        assert_unavailable(api, url, [name])


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        PoolTimeout("QueuePool limit of size 10 overflow 10 reached"),
    ],
)
def test_pool_timeouts_and_refused_connections_count_as_unreachable(error: Exception) -> None:
    assert unreachable_reason(error) is not None


@pytest.mark.parametrize(
    "error",
    [IntegrityError("INSERT …", {}, ValueError("duplicate")), DataError("…", {}, ValueError())],
)
def test_statement_errors_do_not_count_as_unreachable(error: Exception) -> None:
    assert unreachable_reason(error) is None


def test_openapi_declares_the_503_on_every_management_route(database_url: str) -> None:
    with management_app(database_url) as api:
        paths = api.client.get("/openapi.json").json()["paths"]
    operations = [
        operation
        for path, item in paths.items()
        if path.startswith(("/v1/keys", "/v1/users", "/v1/budgets", "/v1/pricing", "/v1/usage"))
        for operation in item.values()
    ]
    assert len(operations) == len(ROUTES) + 2
    assert all("503" in operation["responses"] for operation in operations)


def test_generation_with_the_database_gone_is_a_503_in_each_surfaces_envelope(
    tmp_path: Path,
) -> None:
    # A key not yet in the worker's cache is looked up in the database: with the database
    # gone that used to be a 500 "internal error".
    with FakeOpenAI() as fake, fresh_database("postgresql", tmp_path) as url:
        config = {
            "master_key": MASTER_KEY,
            "database_url": url,
            "require_pricing": False,
            "providers": {"openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"}},
        }
        gateway = GatewayProcess(config, tmp_path)
        gateway.start()
        try:
            key = str(create_key(gateway.base_url, user_id="outage")["key"])
            anyio.run(_drop, url.rsplit("/", 1)[-1])
            messages = [{"role": "user", "content": "hi"}]
            with (
                openai.OpenAI(
                    api_key=key, base_url=gateway.base_url + "/v1", max_retries=0
                ) as client,
                pytest.raises(openai.APIStatusError) as caught,
            ):
                client.chat.completions.create(model="openai:gpt-4o-mini", messages=messages)
            assert caught.value.status_code == 503
            assert caught.value.body["code"] == "database_unavailable"  # type: ignore[index]
            with (
                anthropic.Anthropic(
                    api_key=key, base_url=gateway.base_url, max_retries=0
                ) as claude,
                pytest.raises(anthropic.APIStatusError) as refused,
            ):
                claude.messages.create(model="openai:gpt-4o-mini", max_tokens=8, messages=messages)
            assert refused.value.status_code == 503
            assert refused.value.body["error"]["type"] == "api_error"  # type: ignore[index]
            assert fake.requests == []
        finally:
            gateway.stop()


def test_a_database_never_reached_is_an_outage_not_a_crash(tmp_path: Path) -> None:
    # asyncpg's refused connection is a bare OSError: the catch-all answered it with a 503
    # but handed it on to the server, which logged a plain-text traceback per request.
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/otari"
    config = {"master_key": MASTER_KEY, "database_url": url, "auto_migrate": False}
    gateway = GatewayProcess(config, tmp_path)
    gateway.start()
    try:
        with (
            openai.OpenAI(
                api_key=MASTER_KEY, base_url=gateway.base_url + "/v1", max_retries=0
            ) as admin,
            pytest.raises(openai.APIStatusError) as listing,
        ):
            admin.models.list()
        assert listing.value.status_code == 503
    finally:
        gateway.stop()
    assert "Traceback" not in gateway.logs()


async def _drop(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN + "/postgres")
    try:
        await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await connection.close()
