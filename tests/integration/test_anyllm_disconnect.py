"""A client leaving an any-llm stream ends the provider's stream too, and is billed as 499.

Same method as ``test_disconnect.py`` (slow fakes that note whether the gateway's connection
was gone when their stream ended), for the SDK paths: google-genai's async stream, and
Bedrock's blocking boto3 stream that runs on a worker thread.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.gemini_upstream import FakeGemini
from tests.integration.conftest import MASTER_KEY, create_key
from tests.integration.gateway_process import GatewayProcess
from tests.integration.raw_stream import read_one_event_then_hang_up
from tests.integration.test_disconnect import (
    CANCEL_DEADLINE,
    LONG_PROMPT,
    STREAM_INTERVAL,
    _ObservedStreams,
)


class ObservedGemini(_ObservedStreams, FakeGemini):
    pass


class ObservedBedrock(_ObservedStreams, FakeBedrock):
    pass


@dataclass
class SdkStack:
    gateway: GatewayProcess
    gemini: ObservedGemini
    bedrock: ObservedBedrock


@pytest.fixture(scope="module")
def sdk_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkStack]:
    with (
        ObservedGemini(stream_interval=STREAM_INTERVAL) as gemini,
        ObservedBedrock(stream_interval=STREAM_INTERVAL) as bedrock,
    ):
        config = {
            "master_key": MASTER_KEY,
            "require_pricing": False,
            "providers": {
                "gemini": {"api_key": gemini.api_key, "api_base": gemini.base_url},
                "bedrock": bedrock.gateway_instance(),
            },
        }
        workdir: Path = tmp_path_factory.mktemp("anyllm-disconnect")
        gateway = GatewayProcess(config, workdir)
        gateway.start()
        try:
            yield SdkStack(gateway, gemini, bedrock)
        finally:
            gateway.stop()


def _statuses(base_url: str, user_id: str) -> list[int]:
    query = urllib.parse.urlencode({"user_id": user_id})
    request = urllib.request.Request(
        f"{base_url}/v1/usage?{query}", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return [row["status_code"] for row in orjson.loads(response.read())]


@pytest.mark.parametrize(
    ("instance", "model"),
    [("gemini", "gemini-2.0-flash"), ("bedrock", "anthropic.claude-3-haiku-20240307-v1:0")],
)
def test_hanging_up_ends_the_provider_stream(
    sdk_stack: SdkStack, instance: str, model: str
) -> None:
    fake: _ObservedStreams = getattr(sdk_stack, instance)
    user_id = f"anyllm-hangup-{instance}"
    key = str(create_key(sdk_stack.gateway.base_url, user_id=user_id)["key"])
    body = {
        "model": f"{instance}:{model}",
        "messages": [{"role": "user", "content": LONG_PROMPT}],
        "stream": True,
    }
    received = asyncio.run(
        read_one_event_then_hang_up(sdk_stack.gateway.port, key, "/v1/chat/completions", body)
    )
    assert b" 200 " in received.split(b"\r\n", 1)[0], received[:300]
    deadline = time.monotonic() + CANCEL_DEADLINE + 5
    while not fake.stream_records and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = fake.stream_records
    assert record.peer_gone, "the provider connection was still open when its stream ended"
    assert record.seconds < CANCEL_DEADLINE, record
    while not _statuses(sdk_stack.gateway.base_url, user_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _statuses(sdk_stack.gateway.base_url, user_id) == [499]
