"""One gateway process in front of fake upstreams, shared by the integration tests."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.gateway_process import GatewayProcess, free_port

MASTER_KEY = "sk-otari-test-master"
BODY_LIMIT = 256 * 1024


@dataclass
class Stack:
    gateway: GatewayProcess
    openai_fake: FakeOpenAI
    local_fake: FakeOpenAI
    anthropic_fake: FakeAnthropic
    api_key: str = ""

    @property
    def base_url(self) -> str:
        return self.gateway.base_url

    def openai_client(self, **kwargs: object) -> openai.OpenAI:
        options: dict[str, object] = {"api_key": self.api_key, "max_retries": 0, "timeout": 20}
        options.update(kwargs)
        return openai.OpenAI(base_url=self.base_url + "/v1", **options)  # type: ignore[arg-type]

    def anthropic_client(self, **kwargs: object) -> anthropic.Anthropic:
        options: dict[str, object] = {"api_key": self.api_key, "max_retries": 0, "timeout": 20}
        options.update(kwargs)
        return anthropic.Anthropic(base_url=self.base_url, **options)  # type: ignore[arg-type]


def gateway_config(
    openai_fake: FakeOpenAI, local_fake: FakeOpenAI, anthropic_fake: FakeAnthropic
) -> dict[str, object]:
    return {
        "master_key": MASTER_KEY,
        "max_request_body_bytes": BODY_LIMIT,
        "enable_metrics": True,
        # Listing tests here need no upstream call; discovery has its own gateway in
        # test_models_discovery.py.
        "discover_models": False,
        "providers": {
            "openai": {
                "api_key": openai_fake.api_key,
                "api_base": openai_fake.base_url + "/v1",
                "models": ["gpt-4o-mini", "gpt-4o"],
            },
            "anthropic": {
                "api_key": anthropic_fake.api_key,
                "api_base": anthropic_fake.base_url,
                "models": ["claude-sonnet-4-5"],
            },
            "local": {
                "provider_type": "openai",
                "api_key": local_fake.api_key,
                "api_base": local_fake.base_url + "/v1",
            },
            "chatonly": {
                "provider_type": "openai",
                "api_key": local_fake.api_key,
                "api_base": local_fake.base_url + "/v1",
                "native_responses": False,
            },
            "slow": {
                "provider_type": "openai",
                "api_key": openai_fake.api_key,
                "api_base": openai_fake.base_url + "/v1",
                "timeout": 1.0,
            },
            "badkey": {
                "provider_type": "openai",
                "api_key": "sk-wrong-key-0123456789",
                "api_base": openai_fake.base_url + "/v1",
            },
            "dead": {
                "provider_type": "openai",
                "api_key": "sk-dead",
                "api_base": f"http://127.0.0.1:{free_port()}/v1",
                "connect_timeout": 2.0,
            },
        },
        "aliases": {"fast": "openai:gpt-4o-mini", "claude": "anthropic:claude-sonnet-4-5"},
        # Conformance tests use made-up model names; pricing is enforced in test_admission.py.
        "require_pricing": False,
        "pricing": {
            selector: {"input_price_per_million": 1, "output_price_per_million": 2}
            for selector in ("openai:missing-model", "anthropic:missing-model", "local:local-model")
        },
    }


def create_key(
    base_url: str, *, master_key: str = MASTER_KEY, **fields: object
) -> dict[str, object]:
    """A virtual key made through the management API with the master key."""
    request = urllib.request.Request(
        base_url + "/v1/keys",
        data=orjson.dumps(fields),
        headers={"Authorization": f"Bearer {master_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created: dict[str, object] = orjson.loads(response.read())
    return created


@contextmanager
def priced_stack(workdir: Path, prices: dict[str, dict[str, Any]]) -> Iterator[Stack]:
    """A gateway of its own (for one module) with these config prices and
    ``require_pricing``, so they stay out of the shared stack."""
    with (
        FakeOpenAI() as openai_fake,
        FakeOpenAI(api_key="sk-fake-local") as local_fake,
        FakeAnthropic() as anthropic_fake,
    ):
        config = gateway_config(openai_fake, local_fake, anthropic_fake)
        config["require_pricing"] = True
        config["pricing"] = prices
        gateway = GatewayProcess(config, workdir)
        gateway.start()
        try:
            yield Stack(gateway, openai_fake, local_fake, anthropic_fake)
        finally:
            gateway.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with (
        FakeOpenAI() as openai_fake,
        FakeOpenAI(api_key="sk-fake-local") as local_fake,
        FakeAnthropic() as anthropic_fake,
    ):
        workdir: Path = tmp_path_factory.mktemp("gateway")
        gateway = GatewayProcess(gateway_config(openai_fake, local_fake, anthropic_fake), workdir)
        gateway.start()
        try:
            key = create_key(gateway.base_url, user_id="tester", key_name="integration")
            yield Stack(gateway, openai_fake, local_fake, anthropic_fake, str(key["key"]))
        finally:
            gateway.stop()


@pytest.fixture(autouse=True)
def _fresh_fakes(request: pytest.FixtureRequest) -> None:
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        for fake in (stack.openai_fake, stack.local_fake, stack.anthropic_fake):
            fake.reset()


def usage_rows(base_url: str, user_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The user's usage rows once ``count`` are readable (rows are written asynchronously)."""
    query = urllib.parse.urlencode({"user_id": user_id})
    deadline = time.monotonic() + 10
    while True:
        request = urllib.request.Request(
            f"{base_url}/v1/usage?{query}", headers={"Authorization": f"Bearer {MASTER_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            rows: list[dict[str, Any]] = orjson.loads(response.read())
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
