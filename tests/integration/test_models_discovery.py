"""``/v1/models`` discovery through the real gateway and the official ``openai`` SDK.

A gateway of its own (fresh cache, short failure TTL, 1 s discovery timeout) in front of
fakes that serve their model lists: OpenAI's ``{"data": [...]}`` and Anthropic's paged
``{"data", "has_more", "first_id", "last_id"}``. One fake fails on demand, one hangs.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import MASTER_KEY, create_key
from tests.integration.gateway_process import GatewayProcess, free_port

FAILURE_TTL = 4.0
CONCURRENT = 64


@dataclass
class DiscoveryStack:
    gateway: GatewayProcess
    openai_fake: FakeOpenAI
    anthropic_fake: FakeAnthropic
    flaky: FakeOpenAI
    hanging: FakeOpenAI
    user_key: str

    def client(self, key: str = MASTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=20
        )

    def listing(self, query: str = "", key: str = MASTER_KEY) -> Any:
        request = urllib.request.Request(
            f"{self.gateway.base_url}/v1/models{query}",
            headers={"Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            return orjson.loads(response.read())

    def listings(self, fake: FakeOpenAI | FakeAnthropic) -> int:
        return sum(1 for r in fake.requests if (r.method, r.path) == ("GET", "/v1/models"))


def _openai_entry(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"api_key": fake.api_key, "api_base": fake.base_url + "/v1", **extra}


@pytest.fixture(scope="module")
def discovery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscoveryStack]:
    with (
        FakeOpenAI() as openai_fake,
        FakeAnthropic() as anthropic_fake,
        FakeOpenAI(models=["flaky-1", "flaky-2"]) as flaky,
        FakeOpenAI(models=["slowpoke"]) as hanging,
    ):
        config: dict[str, Any] = {
            "master_key": MASTER_KEY,
            "require_pricing": False,
            "model_discovery_failure_ttl_seconds": FAILURE_TTL,
            "model_discovery_timeout_seconds": 1.0,
            "providers": {
                "openai": _openai_entry(openai_fake, models=["gpt-4o", "declared-extra"]),
                "anthropic": {
                    "api_key": anthropic_fake.api_key,
                    "api_base": anthropic_fake.base_url,
                },
                "flaky": _openai_entry(flaky, provider_type="openai"),
                "hanging": _openai_entry(hanging, provider_type="openai"),
                "quiet": {
                    "provider_type": "openai",
                    "api_base": f"http://127.0.0.1:{free_port()}/v1",
                    "discover_models": False,
                    "models": ["declared-only"],
                },
            },
            "aliases": {"fast": "openai:gpt-4o-mini"},
            "pricing": {
                "openai:priced-in-config": {"input_price_per_million": 1},
                "ghost:unconfigured-instance": {"input_price_per_million": 1},
            },
        }
        workdir: Path = tmp_path_factory.mktemp("discovery")
        gateway = GatewayProcess(config, workdir)
        gateway.start()
        try:
            _post_price(gateway.base_url, "anthropic:priced-in-db")
            key = str(create_key(gateway.base_url, user_id="lister")["key"])
            yield DiscoveryStack(gateway, openai_fake, anthropic_fake, flaky, hanging, key)
        finally:
            gateway.stop()


def _post_price(base_url: str, model_key: str) -> None:
    body = {"model_key": model_key, "input_price_per_million": 2, "output_price_per_million": 3}
    request = urllib.request.Request(
        base_url + "/v1/pricing",
        data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 201)


async def _list_concurrently(base_url: str) -> list[list[str]]:
    async with openai.AsyncOpenAI(
        base_url=base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20
    ) as client:

        async def ids() -> list[str]:
            return [model.id async for model in client.models.list()]

        return await asyncio.gather(*(ids() for _ in range(CONCURRENT)))


def test_discovery_is_single_flight_cached_and_recovers_from_failures(
    discovery: DiscoveryStack,
) -> None:
    stack = discovery
    stack.flaky.fail_next(503)
    stack.hanging.delay_next(5.0)

    listed = asyncio.run(_list_concurrently(stack.gateway.base_url))
    failed_at = time.monotonic()
    assert all(ids == listed[0] for ids in listed)
    ids = listed[0]
    assert len(ids) == len(set(ids))
    # One upstream call per instance for 64 concurrent listings, failures included.
    for fake in (stack.openai_fake, stack.anthropic_fake, stack.flaky, stack.hanging):
        assert stack.listings(fake) == 1
    assert ids[:2] == ["openai:gpt-4o", "openai:declared-extra"]
    assert "quiet:declared-only" in ids
    assert {"openai:gpt-4o-mini", "openai:text-embedding-3-small"} <= set(ids)
    assert {"anthropic:claude-sonnet-4-5", "anthropic:claude-opus-4-1"} <= set(ids)
    assert {"openai:priced-in-config", "anthropic:priced-in-db"} <= set(ids)
    assert ids[-1] == "fast"
    assert not any(i.startswith(("flaky:", "hanging:", "ghost:")) for i in ids)

    # Still inside the failure TTL: the errors are shown and nothing is asked again.
    body = stack.listing("?include_errors=true")
    errors = {error["instance"]: error["message"] for error in body["errors"]}
    assert set(errors) == {"flaky", "hanging"}
    assert "503" in errors["flaky"]
    assert "within 1 seconds" in errors["hanging"]
    assert time.monotonic() - failed_at < FAILURE_TTL
    assert (stack.listings(stack.flaky), stack.listings(stack.hanging)) == (1, 1)

    time.sleep(max(0.0, failed_at + FAILURE_TTL + 0.2 - time.monotonic()))
    with stack.client() as client:
        recovered = {model.id for model in client.models.list()}
    assert {"flaky:flaky-1", "flaky:flaky-2", "hanging:slowpoke"} <= recovered
    assert (stack.listings(stack.flaky), stack.listings(stack.hanging)) == (2, 2)
    # Successes are kept for the (default, 300 s) success TTL.
    assert stack.listings(stack.openai_fake) == 1
    assert "errors" not in stack.listing("?include_errors=false")
    assert stack.listing("?include_errors=true")["errors"] == []


def test_retrieve_a_discovered_model(discovery: DiscoveryStack) -> None:
    with discovery.client(discovery.user_key) as client:
        model = client.models.retrieve("anthropic:claude-haiku-4-5")
        openai_model = client.models.retrieve("openai:text-embedding-3-small")
    assert model.id == "anthropic:claude-haiku-4-5"
    assert model.owned_by == "anthropic"
    assert model.created == int(datetime(2025, 9, 29, tzinfo=UTC).timestamp())
    assert (openai_model.owned_by, openai_model.created) == ("openai", 1_700_000_000)


def test_retrieve_unknown_model_is_404(discovery: DiscoveryStack) -> None:
    with discovery.client() as client, pytest.raises(openai.NotFoundError):
        client.models.retrieve("anthropic:no-such-claude")


def test_errors_need_the_master_key(discovery: DiscoveryStack) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        discovery.listing("?include_errors=true", key=discovery.user_key)
    assert caught.value.code == 403
    body = orjson.loads(caught.value.read())
    assert body["error"]["code"] == "master_key_required"
    plain = discovery.listing(key=discovery.user_key)
    assert set(plain) == {"object", "data"}
