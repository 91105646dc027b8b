"""State shared through Redis by two gateway processes: one rate limit, and key revocation
that takes effect on the other process at once (not after the cache lifetime); plus rate-limit
headers and 429 with Retry-After through the real server."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import create_key
from tests.integration.gateway_process import GatewayProcess

MASTER = "sk-limits-master"
REDIS_URL = "redis://127.0.0.1:6379/3"


def _config(fake: FakeOpenAI, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "master_key": MASTER,
        "database_url": f"sqlite:///{tmp_path / 'shared.db'}",
        "providers": {"openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"}},
        **extra,
    }


def _ask(client: openai.OpenAI) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )


def test_key_rpm_limit_headers_and_retry_after(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        gateway = GatewayProcess(_config(fake, tmp_path), tmp_path)
        gateway.start()
        try:
            key = create_key(gateway.base_url, user_id="limited", rpm_limit=3, master_key=MASTER)
            with openai.OpenAI(
                api_key=str(key["key"]), base_url=gateway.base_url + "/v1", max_retries=0
            ) as client:
                first = _ask(client)
                assert first.headers["x-ratelimit-limit"] == "3"
                assert first.headers["x-ratelimit-remaining"] == "2"
                assert int(first.headers["x-ratelimit-reset"]) > 0
                _ask(client)
                _ask(client)
                with pytest.raises(openai.RateLimitError) as refused:
                    _ask(client)
            assert int(refused.value.response.headers["retry-after"]) > 0
            assert len(fake.requests) == 3
        finally:
            gateway.stop()


def test_two_processes_share_one_limit_through_redis(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        config = _config(fake, tmp_path, redis_url=REDIS_URL)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = GatewayProcess(config, tmp_path / "a")
        second = GatewayProcess(config, tmp_path / "b")
        first.start()
        second.start()
        try:
            key = str(
                create_key(first.base_url, user_id="shared", rpm_limit=4, master_key=MASTER)["key"]
            )
            allowed = 0
            for gateway in (first, second, first, second, first, second):
                with openai.OpenAI(
                    api_key=key, base_url=gateway.base_url + "/v1", max_retries=0
                ) as client:
                    try:
                        _ask(client)
                        allowed += 1
                    except openai.RateLimitError:
                        pass
            assert allowed == 4
        finally:
            first.stop()
            second.stop()


def test_revocation_reaches_the_other_process_at_once(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        config = _config(fake, tmp_path, redis_url=REDIS_URL)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = GatewayProcess(config, tmp_path / "a")
        second = GatewayProcess(config, tmp_path / "b")
        first.start()
        second.start()
        try:
            created = create_key(first.base_url, user_id="revoked", master_key=MASTER)
            key = str(created["key"])
            with openai.OpenAI(
                api_key=key, base_url=second.base_url + "/v1", max_retries=0
            ) as client:
                _ask(client)  # cached as valid on the second process
                request = urllib.request.Request(
                    f"{first.base_url}/v1/keys/{created['id']}",
                    data=orjson.dumps({"is_active": False}),
                    headers={
                        "Authorization": f"Bearer {MASTER}",
                        "Content-Type": "application/json",
                    },
                    method="PATCH",
                )
                with urllib.request.urlopen(request, timeout=10):
                    pass
                time.sleep(0.2)  # well under the 1 s cache lifetime
                with pytest.raises(openai.AuthenticationError) as refused:
                    _ask(client)
            assert "inactive" in refused.value.message
        finally:
            first.stop()
            second.stop()
