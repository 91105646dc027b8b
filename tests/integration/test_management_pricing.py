"""``/v1/pricing`` on SQLite and PostgreSQL: versioned rows, the version in effect,
replacement of a version, keys with ``/``, validation, and ``load_price_rows``."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from otari_gateway.billing.cost import Price
from otari_gateway.control.pricing import load_price_rows
from tests.integration.conftest import MASTER_KEY, priced_stack
from tests.integration.test_management_app import (
    MASTER_HEADERS,
    Management,
    is_utc_iso,
    management_app,
)

PRICE_FIELDS = {
    "id",
    "model_key",
    "input_price_per_million",
    "output_price_per_million",
    "cache_read_price_per_million",
    "cache_write_price_per_million",
    "price_per_image",
    "price_per_request",
    "price_per_audio_second",
    "price_per_million_characters",
    "effective_at",
    "created_at",
    "source",
}


@pytest.fixture
def api(database_url: str) -> Iterator[Management]:
    with management_app(database_url) as management:
        yield management


def price(api: Management, model_key: str, effective_at: str | None, rate: float) -> Any:
    body: dict[str, Any] = {
        "model_key": model_key,
        "input_price_per_million": rate,
        "output_price_per_million": rate * 4,
    }
    if effective_at is not None:
        body["effective_at"] = effective_at
    return api.ok("POST", "/v1/pricing", json=body)


def test_set_price_returns_the_row(api: Management) -> None:
    row = api.ok(
        "POST",
        "/v1/pricing",
        json={
            "model_key": "openai:gpt-4o-mini",
            "input_price_per_million": 0.15,
            "output_price_per_million": 0.6,
            "cache_read_price_per_million": 0.075,
        },
    )
    assert set(row) == PRICE_FIELDS
    assert (row["input_price_per_million"], row["output_price_per_million"]) == (0.15, 0.6)
    assert row["cache_read_price_per_million"] == 0.075
    assert row["price_per_image"] is None
    assert is_utc_iso(row["effective_at"]) and is_utc_iso(row["created_at"])
    assert datetime.fromisoformat(row["effective_at"]) <= datetime.now(UTC)
    assert api.ok("GET", "/v1/pricing/openai:gpt-4o-mini") == row
    assert api.changes.calls == ["pricing"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model_key": "gpt-4o", "input_price_per_million": 1}, "'provider:model'"),
        ({"model_key": ":gpt-4o", "input_price_per_million": 1}, "'provider:model'"),
        ({"model_key": "openai:", "input_price_per_million": 1}, "'provider:model'"),
        ({"model_key": "openai:gpt-4o"}, "at least one price field"),
        ({"model_key": "openai:gpt-4o", "output_price_per_million": -1}, "output_price"),
        ({"model_key": "openai:gpt-4o", "price_per_image": "abc"}, "price_per_image"),
        ({"input_price_per_million": 1}, "model_key"),
    ],
)
def test_set_price_rejects_bad_input(api: Management, body: dict[str, Any], fragment: str) -> None:
    assert fragment in api.error(400, "POST", "/v1/pricing", json=body)
    assert api.changes.calls == []


def test_non_token_prices_alone_count(api: Management) -> None:
    row = api.ok(
        "POST", "/v1/pricing", json={"model_key": "openai:dall-e-3", "price_per_image": 0.04}
    )
    assert row["price_per_image"] == 0.04 and row["input_price_per_million"] is None


def test_versions_and_the_one_in_effect(api: Management) -> None:
    old = price(api, "openai:gpt-4o", "2020-01-01T00:00:00Z", 1)
    current = price(api, "openai:gpt-4o", "2024-06-01T00:00:00", 2)  # naive: UTC
    future = price(api, "openai:gpt-4o", "2999-01-01T00:00:00+00:00", 3)
    assert current["effective_at"].startswith("2024-06-01T00:00:00")
    assert is_utc_iso(current["effective_at"])
    price(api, "anthropic:claude-sonnet-4-5", "2021-01-01T00:00:00Z", 3)

    assert api.ok("GET", "/v1/pricing/openai:gpt-4o")["id"] == current["id"]
    listed = api.ok("GET", "/v1/pricing")
    assert [(r["model_key"], r["input_price_per_million"]) for r in listed] == [
        ("anthropic:claude-sonnet-4-5", 3),
        ("openai:gpt-4o", 2),
    ]
    every = [r["id"] for r in api.ok("GET", "/v1/pricing?all=true")]
    assert every[1:] == [future["id"], current["id"], old["id"]]

    # The same effective_at replaces that version instead of adding one.
    replaced = price(api, "openai:gpt-4o", "2024-06-01T02:00:00+02:00", 2.5)
    assert replaced["id"] == current["id"] and replaced["input_price_per_million"] == 2.5
    assert len(api.ok("GET", "/v1/pricing?all=true")) == 4
    assert api.ok("GET", "/v1/pricing/openai:gpt-4o")["output_price_per_million"] == 10


def test_model_keys_with_slashes_and_only_future_versions(api: Management) -> None:
    price(api, "openrouter:meta-llama/llama-3-70b", None, 0.5)
    shown = api.ok("GET", "/v1/pricing/openrouter:meta-llama/llama-3-70b")
    assert shown["model_key"] == "openrouter:meta-llama/llama-3-70b"
    price(api, "openai:gpt-9", "2999-01-01T00:00:00Z", 1)
    assert (
        api.error(404, "GET", "/v1/pricing/openai:gpt-9") == "No pricing for model 'openai:gpt-9'"
    )
    assert [r["model_key"] for r in api.ok("GET", "/v1/pricing")] == [
        "openrouter:meta-llama/llama-3-70b"
    ]


def test_delete_removes_every_version(api: Management) -> None:
    price(api, "openai:gpt-4o", "2020-01-01T00:00:00Z", 1)
    price(api, "openai:gpt-4o", "2999-01-01T00:00:00Z", 2)
    price(api, "local:org/model", None, 1)
    api.changes.calls.clear()

    response = api.client.delete("/v1/pricing/openai:gpt-4o", headers=MASTER_HEADERS)
    assert response.status_code == 204 and response.content == b""
    assert api.changes.calls == ["pricing"]
    api.error(404, "GET", "/v1/pricing/openai:gpt-4o")
    api.error(404, "DELETE", "/v1/pricing/openai:gpt-4o")
    assert [r["model_key"] for r in api.ok("GET", "/v1/pricing?all=true")] == ["local:org/model"]
    assert (
        api.client.delete("/v1/pricing/local:org/model", headers=MASTER_HEADERS).status_code == 204
    )
    assert api.ok("GET", "/v1/pricing") == []
    assert api.changes.calls == ["pricing", "pricing"]


def test_load_price_rows_feeds_the_price_book_exactly(api: Management) -> None:
    api.ok(
        "POST",
        "/v1/pricing",
        json={
            "model_key": "openai:gpt-4o",
            "input_price_per_million": "2.500001",
            "output_price_per_million": 10,
            "price_per_request": 0.000001,
            "effective_at": "2024-01-01T00:00:00Z",
        },
    )
    assert api.client.portal is not None
    rows = api.client.portal.call(load_price_rows, api.db)
    assert len(rows) == 1
    assert rows[0].model_key == "openai:gpt-4o"
    assert rows[0].effective_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert rows[0].price == Price(
        input_per_million=Decimal("2.500001"),
        output_per_million=Decimal("10"),
        per_request=Decimal("0.000001"),
    )


def test_a_price_without_effective_at_takes_effect_when_created(api: Management) -> None:
    # effective_at came from the service's clock and created_at from the column default.
    row = price(api, "openai:gpt-4o", None, 1)
    assert row["effective_at"] == row["created_at"]


NON_TOKEN_PRICES = {
    "openai:dall-e-3": {"price_per_image": "0.04"},
    "openai:omni-moderation-latest": {"price_per_request": "0.0001"},
    "openai:whisper-1": {"price_per_audio_second": "0.0001"},
    "openai:tts-1": {"price_per_million_characters": "15", "price_per_request": "0.001"},
}


def test_models_show_prices_that_are_not_per_token(tmp_path: Path) -> None:
    # /v1/models showed no pricing for a model priced only per image, request, second or
    # character, although those prices bill.
    with priced_stack(tmp_path, NON_TOKEN_PRICES) as gateway:
        request = urllib.request.Request(
            gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            listed = {
                item["id"]: item.get("pricing") for item in orjson.loads(response.read())["data"]
            }
    for selector, fields in NON_TOKEN_PRICES.items():
        assert listed[selector] == {name: float(value) for name, value in fields.items()}


def test_config_prices_are_listed_read_only_and_yield_to_managed_rows(database_url: str) -> None:
    # As the reference lists them; billing already used them (managed rows first).
    configured = {
        "openai:gpt-4o-mini": {"input_price_per_million": 0.15, "output_price_per_million": 0.6},
        "openai:dall-e-3": {"price_per_image": "0.04"},
    }
    with management_app(database_url, configured) as api:
        listed = {row["model_key"]: row for row in api.ok("GET", "/v1/pricing")}
        assert set(listed) == set(configured)
        row = api.ok("GET", "/v1/pricing/openai:gpt-4o-mini")
        assert set(row) == PRICE_FIELDS
        assert (row["source"], row["input_price_per_million"]) == ("config", 0.15)
        assert api.ok("GET", "/v1/pricing/openai:dall-e-3")["price_per_image"] == 0.04
        message = api.error(409, "DELETE", "/v1/pricing/openai:dall-e-3")
        assert "config file" in message
        price(api, "openai:gpt-4o-mini", None, 1.0)
        row = api.ok("GET", "/v1/pricing/openai:gpt-4o-mini")
        assert (row["source"], row["input_price_per_million"]) == ("api", 1.0)
        listed = api.ok("GET", "/v1/pricing")
        assert [r["source"] for r in listed if r["model_key"] == "openai:gpt-4o-mini"] == ["api"]
        response = api.client.delete("/v1/pricing/openai:gpt-4o-mini", headers=MASTER_HEADERS)
        assert response.status_code == 204
        assert api.ok("GET", "/v1/pricing/openai:gpt-4o-mini")["source"] == "config"
