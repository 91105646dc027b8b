"""A client that hangs up mid-stream must cancel the upstream request.

This module runs its own gateway in front of its own slow-streaming fakes (one event
every ``STREAM_INTERVAL`` seconds), so a full stream takes seconds while a cancelled one
ends at the upstream within a fraction of that. The fakes record nothing about how a
stream ended, so they are wrapped here: after the fake's SSE writer returns, the wrapper
notes how long it ran and whether the gateway's connection to it was gone.
The same slow fakes also show that an upstream stalling mid-stream ends the client's
stream with an error event instead of a hang.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from aiohttp import web

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import SseReply
from tests.integration.conftest import MASTER_KEY, create_key, usage_rows
from tests.integration.gateway_process import GatewayProcess
from tests.integration.raw_stream import read_one_event_then_hang_up

STREAM_INTERVAL = 0.2
# 40 words: the echoed answer streams in ~45 events, about 9 s at STREAM_INTERVAL.
LONG_PROMPT = " ".join(f"word{i}" for i in range(40))
FULL_STREAM_SECONDS = 40 * STREAM_INTERVAL
# A cancelled upstream must stop well before a full stream would have ended.
CANCEL_DEADLINE = 3.0


@dataclass(frozen=True)
class StreamRecord:
    """How one upstream SSE response ended, as the fake saw it."""

    frames: int
    seconds: float
    peer_gone: bool  # the gateway had closed the upstream connection


class _ObservedStreams:
    """Mixin for a fake upstream: records every SSE response it served."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._records: list[StreamRecord] = []
        self._records_lock = threading.Lock()

    @property
    def stream_records(self) -> list[StreamRecord]:
        with self._records_lock:
            return list(self._records)

    def clear_records(self) -> None:
        with self._records_lock:
            self._records.clear()

    async def _render_sse(
        self, request: web.Request, reply: SseReply, drop_after: int | None
    ) -> web.StreamResponse:
        started = time.monotonic()
        response: web.StreamResponse = await super()._render_sse(  # type: ignore[misc]
            request, reply, drop_after
        )
        transport = request.transport
        record = StreamRecord(
            frames=len(reply.frames),
            seconds=time.monotonic() - started,
            peer_gone=transport is None or transport.is_closing(),
        )
        with self._records_lock:
            self._records.append(record)
        return response


class ObservedOpenAI(_ObservedStreams, FakeOpenAI):
    pass


class ObservedAnthropic(_ObservedStreams, FakeAnthropic):
    pass


@dataclass
class SlowStack:
    gateway: GatewayProcess
    openai_fake: ObservedOpenAI
    anthropic_fake: ObservedAnthropic
    key: str

    @property
    def port(self) -> int:
        return self.gateway.port

    def fakes(self) -> tuple[ObservedOpenAI, ObservedAnthropic]:
        return self.openai_fake, self.anthropic_fake


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowStack]:
    with (
        ObservedOpenAI(api_key="sk-fake-slow-openai", stream_interval=STREAM_INTERVAL) as oai,
        ObservedAnthropic(api_key="sk-ant-fake-slow", stream_interval=STREAM_INTERVAL) as ant,
    ):
        config: dict[str, object] = {
            "master_key": MASTER_KEY,
            "providers": {
                "openai": {
                    "api_key": oai.api_key,
                    "api_base": oai.base_url + "/v1",
                    "models": ["gpt-4o-mini"],
                },
                "anthropic": {
                    "api_key": ant.api_key,
                    "api_base": ant.base_url,
                    "models": ["claude-sonnet-4-5"],
                },
                # Same fake, but a read timeout shorter than the gap between its events.
                "stall": {
                    "provider_type": "openai",
                    "api_key": oai.api_key,
                    "api_base": oai.base_url + "/v1",
                    "timeout": STREAM_INTERVAL / 2,
                },
            },
        }
        workdir: Path = tmp_path_factory.mktemp("disconnect-gateway")
        gateway = GatewayProcess(config, workdir)
        gateway.start()
        try:
            key = str(create_key(gateway.base_url, user_id="slow")["key"])
            yield SlowStack(gateway, oai, ant, key)
        finally:
            gateway.stop()


@pytest.fixture
def slow(slow_stack: SlowStack) -> SlowStack:
    """The module's stack with fresh fakes and no stream records."""
    for fake in slow_stack.fakes():
        fake.reset()
        fake.clear_records()
    return slow_stack


async def _wait_for_record(
    fake: _ObservedStreams, within: float = FULL_STREAM_SECONDS
) -> StreamRecord:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        records = fake.stream_records
        if records:
            return records[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the fake upstream never finished serving the stream")


def _assert_gateway_healthy(stack: SlowStack) -> None:
    url = f"http://127.0.0.1:{stack.port}/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert orjson.loads(response.read()) == {"status": "healthy"}
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{stack.port}/v1", api_key=stack.key, max_retries=0, timeout=20
    ) as client:
        reply = client.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "still there"}]
        )
    assert reply.choices[0].message.content == "echo: still there"


async def _hang_up_and_check(
    stack: SlowStack, fake: _ObservedStreams, path: str, body: dict[str, Any]
) -> StreamRecord:
    started = time.monotonic()
    received = await read_one_event_then_hang_up(stack.port, stack.key, path, body)
    assert b" 200 " in received.split(b"\r\n", 1)[0], received[:300]
    assert b"data:" in received
    record = await _wait_for_record(fake)
    waited = time.monotonic() - started
    assert record.peer_gone, "the upstream connection was still open when its stream ended"
    assert record.seconds < CANCEL_DEADLINE, record
    assert waited < CANCEL_DEADLINE + 2, waited
    return record


async def test_chat_client_disconnect_cancels_upstream(slow: SlowStack) -> None:
    body = {
        "model": "openai:gpt-4o-mini",
        "messages": [{"role": "user", "content": LONG_PROMPT}],
        "stream": True,
    }
    await _hang_up_and_check(slow, slow.openai_fake, "/v1/chat/completions", body)
    _assert_gateway_healthy(slow)


async def test_messages_client_disconnect_cancels_upstream(slow: SlowStack) -> None:
    body = {
        "model": "anthropic:claude-sonnet-4-5",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": LONG_PROMPT}],
        "stream": True,
    }
    await _hang_up_and_check(slow, slow.anthropic_fake, "/v1/messages", body)
    _assert_gateway_healthy(slow)


async def test_translated_chat_disconnect_cancels_anthropic_upstream(slow: SlowStack) -> None:
    body = {
        "model": "anthropic:claude-sonnet-4-5",
        "messages": [{"role": "user", "content": LONG_PROMPT}],
        "stream": True,
    }
    await _hang_up_and_check(slow, slow.anthropic_fake, "/v1/chat/completions", body)
    _assert_gateway_healthy(slow)


async def test_translated_messages_disconnect_cancels_openai_upstream(slow: SlowStack) -> None:
    body = {
        "model": "openai:gpt-4o-mini",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": LONG_PROMPT}],
        "stream": True,
    }
    await _hang_up_and_check(slow, slow.openai_fake, "/v1/messages", body)
    _assert_gateway_healthy(slow)


async def test_responses_client_disconnect_cancels_upstream(slow: SlowStack) -> None:
    body = {"model": "openai:gpt-4o-mini", "input": LONG_PROMPT, "stream": True}
    await _hang_up_and_check(slow, slow.openai_fake, "/v1/responses", body)
    _assert_gateway_healthy(slow)


def test_sdk_closing_stream_early_cancels_upstream(slow: SlowStack) -> None:
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{slow.port}/v1", api_key=slow.key, max_retries=0, timeout=20
    ) as client:
        with client.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=[{"role": "user", "content": LONG_PROMPT}],
            stream=True,
        ) as stream:
            first = next(iter(stream))
        assert first.choices
    deadline = time.monotonic() + FULL_STREAM_SECONDS
    while not slow.openai_fake.stream_records and time.monotonic() < deadline:
        time.sleep(0.05)
    records = slow.openai_fake.stream_records
    assert records, "the fake upstream never finished serving the stream"
    assert records[0].peer_gone
    assert records[0].seconds < CANCEL_DEADLINE
    _assert_gateway_healthy(slow)


def test_complete_stream_is_not_cut_short(slow: SlowStack) -> None:
    """Control: a client that reads to the end lets the upstream finish normally."""
    with anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{slow.port}", api_key=slow.key, max_retries=0, timeout=20
    ) as client:
        message = client.messages.create(
            model="openai:gpt-4o-mini",
            max_tokens=50,
            messages=[{"role": "user", "content": "short"}],
            stream=True,
        )
        with message as events:
            types = [event.type for event in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    records = slow.openai_fake.stream_records
    assert len(records) == 1
    assert not records[0].peer_gone
    assert records[0].seconds >= (records[0].frames - 1) * STREAM_INTERVAL * 0.9


def test_stalled_upstream_stream_ends_with_timeout_error(slow: SlowStack) -> None:
    started = time.monotonic()
    with (
        openai.OpenAI(
            base_url=f"http://127.0.0.1:{slow.port}/v1",
            api_key=slow.key,
            max_retries=0,
            timeout=20,
        ) as client,
        pytest.raises(openai.APIError) as caught,
        client.chat.completions.create(
            model="stall:gpt-4o-mini",
            messages=[{"role": "user", "content": LONG_PROMPT}],
            stream=True,
        ) as stream,
    ):
        list(stream)
    assert not isinstance(caught.value, openai.APIConnectionError)
    assert time.monotonic() - started < CANCEL_DEADLINE
    # The error event carries the body of an OpenAI error envelope.
    assert isinstance(caught.value.body, dict)
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    assert "Traceback" not in caught.value.message


def test_a_client_leaving_after_the_final_count_is_billed_that_count(slow: SlowStack) -> None:
    """The stream's usage had arrived (OpenAI's usage chunk, Anthropic's message_delta)
    when the client left: the row bills exactly it, not the relayed-events estimate."""
    user_chat, user_messages = "leaves-after-usage-chat", "leaves-after-usage-messages"
    base = f"http://127.0.0.1:{slow.port}"
    with openai.OpenAI(
        base_url=base + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20
    ) as client:
        stream = client.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=[{"role": "user", "content": "count these few words"}],
            stream=True,
            stream_options={"include_usage": True},
            user=user_chat,
        )
        with stream:
            seen = next(chunk.usage for chunk in stream if chunk.usage is not None)
    sdk = anthropic.Anthropic(base_url=base, api_key=MASTER_KEY, max_retries=0, timeout=20)
    with (
        sdk,
        sdk.messages.stream(
            model="anthropic:claude-sonnet-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "count these few words"}],
            metadata={"user_id": user_messages},
        ) as events,
    ):
        delta = next(event for event in events if event.type == "message_delta")
    [chat_row] = usage_rows(base, user_chat)
    assert (chat_row["prompt_tokens"], chat_row["completion_tokens"]) == (
        seen.prompt_tokens,
        seen.completion_tokens,
    )
    [messages_row] = usage_rows(base, user_messages)
    assert messages_row["completion_tokens"] == delta.usage.output_tokens
