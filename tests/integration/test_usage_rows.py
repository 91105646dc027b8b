"""Usage rows through the real gateway: one row per request, exact tokens, exact money.

Every request on every surface (chat, messages, responses, embeddings; JSON and streams,
passthrough and translated) must leave exactly one ``/v1/usage`` row carrying the fake
upstream's token counts, the bare upstream model, the instance name (aliases resolved) and
a cost equal to price × tokens; the cost must be in the user's ``spend`` once the row is
readable. Streams settle before their terminal event, so a client that hangs up at ``[DONE]``
is billed within a second; an upstream failure before any output is recorded at no cost with
the hold released, one cut short after output is billed for it;
a client that leaves mid-stream is billed at least for its input, and one that leaves while
its stream is being settled (just before the terminal event) is still settled exactly once.

Prices: the shared stack prices these models through genai-prices (no managed rows), so the
expected cost comes from ``GET /v1/pricing/{model_key}`` when a managed row exists and from
genai-prices otherwise. The disconnect tests run on their own gateways with explicit config
prices (slow fakes; a Redis limiter behind a delaying proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import MASTER_KEY, Stack, create_key
from tests.integration.gateway_process import GatewayProcess, free_port
from tests.integration.raw_stream import read_one_event_then_hang_up

REQUEST_ID = "x-otari-request-id"
MICRO = Decimal("0.000001")
ROW_WITHIN = 2.0  # rows are batched; the contract says readable within 1 s, polled up to 2 s
SETTLE_WITHIN = 1.0
# 30 words: the fakes count words, so prompt 30 and completion 31 ("echo:" + 30 words).
WORDS = " ".join(f"w{i}" for i in range(30))
PROMPT, COMPLETION = 30, 31
# Embeddings are cheap ($0.02 / M): enough words for a cost above a micro-dollar.
EMBED_WORDS = " ".join(f"e{i}" for i in range(200))
PROVIDER_TYPES = {"openai": "openai", "anthropic": "anthropic"}
# Start-up is mostly imports; with PYTHONDONTWRITEBYTECODE set in the environment, the
# gateway compiles every module again. Bytecode cached outside the repository halves that.
FAST_IMPORTS = {
    "PYTHONDONTWRITEBYTECODE": "",
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "otari-test-pycache"),
}


# --------------------------------------------------------------------------- HTTP helpers


def _call(base_url: str, method: str, path: str, body: Any = None, *, key: str = MASTER_KEY) -> Any:
    request = urllib.request.Request(
        base_url + path,
        data=None if body is None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        payload = response.read()
    return orjson.loads(payload) if payload else None


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def _rows(base_url: str, user_id: str) -> list[dict[str, Any]]:
    """Every usage row of the user (all pages)."""
    rows: list[dict[str, Any]] = []
    skip = 0
    while True:
        query = urllib.parse.urlencode({"user_id": user_id, "skip": skip, "limit": 1000})
        page = _call(base_url, "GET", f"/v1/usage?{query}")
        rows.extend(page)
        if len(page) < 1000:
            return rows
        skip += len(page)


def _user(base_url: str, user_id: str) -> dict[str, Any]:
    user: dict[str, Any] = _call(base_url, "GET", f"/v1/users/{user_id}")
    return user


def _wait_row(
    base_url: str, user_id: str, request_id: str, within: float = ROW_WITHIN
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The row whose id is the request's id (polled), and all the user's rows then."""
    deadline = time.monotonic() + within
    while True:
        rows = _rows(base_url, user_id)
        mine = [row for row in rows if row["id"] == request_id]
        if mine:
            assert len(mine) == 1, mine
            return mine[0], rows
        if time.monotonic() > deadline:
            raise AssertionError(f"no usage row for request {request_id} within {within} s")
        time.sleep(0.05)


def _wait_user(
    base_url: str, user_id: str, done: Callable[[dict[str, Any]], bool], within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        user = _user(base_url, user_id)
        if done(user) or time.monotonic() > deadline:
            return user
        time.sleep(0.05)


def _budgeted_key(base_url: str, user_id: str, **key_fields: Any) -> str:
    """A key of a new user in a (generous) budget group: its requests hold money, so
    ``reserved`` shows whether every hold is released."""
    budget = _call(base_url, "POST", "/v1/budgets", {"max_budget": 1_000_000})
    _call(base_url, "POST", "/v1/users", {"user_id": user_id, "budget_id": budget["budget_id"]})
    return str(create_key(base_url, user_id=user_id, **key_fields)["key"])


def _managed_price(stack: Stack, model_key: str) -> dict[str, Any] | None:
    """``GET /v1/pricing/{model_key}`` with the caller's key; None on 404."""
    status = 0
    try:
        price: dict[str, Any] = _call(
            stack.base_url, "GET", f"/v1/pricing/{model_key}", key=stack.api_key
        )
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
    else:
        return price
    assert status == 404, f"GET /v1/pricing/{model_key}: {status}"
    return None


def _expected_cost(stack: Stack, row: dict[str, Any]) -> Decimal:
    """price × tokens: a managed price when one exists, else genai-prices' rates (the
    gateway's fallback for models priced neither by rows nor by the config)."""
    instance, model = row["provider"], row["model"]
    prompt, completion = row["prompt_tokens"], row["completion_tokens"]
    cache_read, cache_write = row["cache_read_tokens"], row["cache_write_tokens"]
    price = _managed_price(stack, f"{instance}:{model}")
    if price is None:
        found = calc_price(
            GenaiUsage(
                input_tokens=prompt,
                output_tokens=completion,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
            ),
            model_ref=model,
            provider_id=PROVIDER_TYPES[instance],
        )
        return Decimal(found.total_price).quantize(MICRO, rounding=ROUND_HALF_EVEN)

    managed: dict[str, Any] = price

    def rate(name: str, fallback: str | None = None) -> Decimal:
        value = managed.get(name)
        if value is None and fallback is not None:
            value = managed.get(fallback)
        return Decimal(0) if value is None else _money(value)

    uncached = prompt - cache_read - cache_write
    total: Decimal = (
        uncached * rate("input_price_per_million")
        + cache_read * rate("cache_read_price_per_million", "input_price_per_million")
        + cache_write * rate("cache_write_price_per_million", "input_price_per_million")
        + completion * rate("output_price_per_million")
    ) / Decimal(1_000_000) + rate("price_per_request")
    return total.quantize(MICRO, rounding=ROUND_HALF_EVEN)


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Expected:
    request_id: str
    model: str
    provider: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int = 0


Case = Callable[[Stack], Expected]


def _chat_non_stream(stack: Stack) -> Expected:
    with stack.openai_client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="fast", messages=[{"role": "user", "content": WORDS}]
        )
        reply = raw.parse()
    assert reply.choices[0].message.content == "echo: " + WORDS
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (PROMPT, COMPLETION)
    return Expected(raw.headers[REQUEST_ID], "gpt-4o-mini", "openai", "chat", PROMPT, COMPLETION)


def _chat_stream_without_usage(stack: Stack) -> Expected:
    with (
        stack.openai_client() as client,
        client.chat.completions.with_streaming_response.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": WORDS}], stream=True
        ) as response,
    ):
        request_id = response.headers[REQUEST_ID]
        chunks = list(response.parse())
    assert chunks
    assert all(chunk.usage is None for chunk in chunks), "client did not ask for usage"
    assert all(chunk.choices for chunk in chunks), "the upstream's usage chunk must be dropped"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == "echo: " + WORDS
    return Expected(request_id, "gpt-4o-mini", "openai", "chat", PROMPT, COMPLETION)


def _chat_stream_with_usage(stack: Stack) -> Expected:
    with (
        stack.openai_client() as client,
        client.chat.completions.with_streaming_response.create(
            model="openai:gpt-4o",
            messages=[{"role": "user", "content": WORDS}],
            stream=True,
            stream_options={"include_usage": True},
        ) as response,
    ):
        request_id = response.headers[REQUEST_ID]
        chunks = list(response.parse())
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT, COMPLETION)
    return Expected(request_id, "gpt-4o", "openai", "chat", PROMPT, COMPLETION)


def _messages_non_stream_cached(stack: Stack) -> Expected:
    # A cache_control system block: the fake reports cache_read_input_tokens = 3 on top of
    # input_tokens (the words of system + messages: 2 + 30).
    system: Any = [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]
    with stack.anthropic_client() as client:
        raw = client.messages.with_raw_response.create(
            model="claude",
            max_tokens=100,
            system=system,
            messages=[{"role": "user", "content": WORDS}],
        )
        message = raw.parse()
    assert message.usage.input_tokens == PROMPT + 2
    assert message.usage.cache_read_input_tokens == 3
    # Anthropic's input_tokens excludes cache reads; the row's prompt_tokens includes them.
    return Expected(
        raw.headers[REQUEST_ID],
        "claude-sonnet-4-5",
        "anthropic",
        "messages",
        PROMPT + 2 + 3,
        COMPLETION,
        cache_read_tokens=3,
    )


def _messages_stream(stack: Stack) -> Expected:
    with (
        stack.anthropic_client() as client,
        client.messages.with_streaming_response.create(
            model="anthropic:claude-sonnet-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": WORDS}],
            stream=True,
        ) as response,
    ):
        request_id = response.headers[REQUEST_ID]
        events = list(response.parse())
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    return Expected(request_id, "claude-sonnet-4-5", "anthropic", "messages", PROMPT, COMPLETION)


def _chat_stream_translated_to_anthropic(stack: Stack) -> Expected:
    with (
        stack.openai_client() as client,
        client.chat.completions.with_streaming_response.create(
            model="anthropic:claude-sonnet-4-5",
            messages=[{"role": "user", "content": WORDS}],
            stream=True,
            stream_options={"include_usage": True},
        ) as response,
    ):
        request_id = response.headers[REQUEST_ID]
        chunks = list(response.parse())
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "echo: " + WORDS
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT, COMPLETION)
    return Expected(request_id, "claude-sonnet-4-5", "anthropic", "chat", PROMPT, COMPLETION)


def _messages_stream_translated_to_openai(stack: Stack) -> Expected:
    with (
        stack.anthropic_client() as client,
        client.messages.with_streaming_response.create(
            model="openai:gpt-4o",
            max_tokens=100,
            messages=[{"role": "user", "content": WORDS}],
            stream=True,
        ) as response,
    ):
        request_id = response.headers[REQUEST_ID]
        events = list(response.parse())
    assert events[-1].type == "message_stop"
    deltas = [event for event in events if event.type == "message_delta"]
    assert len(deltas) == 1
    assert deltas[0].usage.output_tokens == COMPLETION
    assert deltas[0].usage.input_tokens == PROMPT
    return Expected(request_id, "gpt-4o", "openai", "messages", PROMPT, COMPLETION)


def _responses_stream_on(model: str, upstream_model: str, provider: str) -> Case:
    def case(stack: Stack) -> Expected:
        with (
            stack.openai_client() as client,
            client.responses.with_streaming_response.create(
                model=model, input=WORDS, stream=True
            ) as response,
        ):
            request_id = response.headers[REQUEST_ID]
            events = list(response.parse())
        assert events[-1].type == "response.completed"
        usage = events[-1].response.usage
        assert usage is not None
        assert (usage.input_tokens, usage.output_tokens) == (PROMPT, COMPLETION)
        return Expected(request_id, upstream_model, provider, "responses", PROMPT, COMPLETION)

    return case


def _responses_translated_to_anthropic(stack: Stack) -> Expected:
    with stack.openai_client() as client:
        raw = client.responses.with_raw_response.create(model="claude", input=WORDS)
        response = raw.parse()
    assert response.output_text == "echo: " + WORDS
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (PROMPT, COMPLETION)
    return Expected(
        raw.headers[REQUEST_ID], "claude-sonnet-4-5", "anthropic", "responses", PROMPT, COMPLETION
    )


def _embeddings(stack: Stack) -> Expected:
    with stack.openai_client() as client:
        raw = client.embeddings.with_raw_response.create(
            model="openai:text-embedding-3-small", input=EMBED_WORDS
        )
        result = raw.parse()
    assert result.usage.prompt_tokens == 200
    return Expected(
        raw.headers[REQUEST_ID], "text-embedding-3-small", "openai", "embeddings", 200, 0
    )


CASES: dict[str, Case] = {
    "chat": _chat_non_stream,
    "chat-stream-without-usage": _chat_stream_without_usage,
    "chat-stream-with-usage": _chat_stream_with_usage,
    "messages": _messages_non_stream_cached,
    "messages-stream": _messages_stream,
    "chat-stream-to-anthropic": _chat_stream_translated_to_anthropic,
    "messages-stream-to-openai": _messages_stream_translated_to_openai,
    "responses-stream": _responses_stream_on("openai:gpt-4o-mini", "gpt-4o-mini", "openai"),
    "responses-to-anthropic": _responses_translated_to_anthropic,
    "responses-stream-to-anthropic": _responses_stream_on(
        "anthropic:claude-sonnet-4-5", "claude-sonnet-4-5", "anthropic"
    ),
    "embeddings": _embeddings,
}


@pytest.fixture(scope="module")
def quiet_stack(stack: Stack) -> Stack:
    """The shared stack once the tester's ledger has stopped moving: rows of earlier
    modules' requests are written in batches and may still be arriving, which would show up
    as extra rows and spend here."""
    deadline = time.monotonic() + 5.0
    last: tuple[frozenset[str], Any, Any] | None = None
    while time.monotonic() < deadline:
        user = _user(stack.base_url, "tester")
        seen = (
            frozenset(row["id"] for row in _rows(stack.base_url, "tester")),
            user["spend"],
            user["reserved"],
        )
        if seen == last and _money(user["reserved"]) == 0:
            break
        last = seen
        time.sleep(0.5)
    return stack


@pytest.mark.parametrize("case", list(CASES))
def test_one_exact_row_per_request(quiet_stack: Stack, case: str) -> None:
    stack = quiet_stack
    before = _user(stack.base_url, "tester")
    ids_before = {row["id"] for row in _rows(stack.base_url, "tester")}
    expected = CASES[case](stack)
    row, rows = _wait_row(stack.base_url, "tester", expected.request_id)
    extra = [r for r in rows if r["id"] not in ids_before and r["id"] != expected.request_id]
    assert not extra, f"one row per request; also new: {extra}"
    assert row["user_id"] == "tester"
    assert row["model"] == expected.model
    assert row["provider"] == expected.provider
    assert row["endpoint"] == expected.endpoint
    assert (row["status"], row["status_code"], row["error_message"]) == ("success", 200, None)
    assert row["latency_ms"] >= 0
    assert row["prompt_tokens"] == expected.prompt_tokens
    assert row["completion_tokens"] == expected.completion_tokens
    assert row["total_tokens"] == expected.prompt_tokens + expected.completion_tokens
    assert row["cache_read_tokens"] == expected.cache_read_tokens
    assert row["cache_write_tokens"] == 0
    cost = _money(row["cost"])
    assert cost > 0
    assert cost == _expected_cost(stack, row)
    after = _user(stack.base_url, "tester")
    assert _money(after["spend"]) - _money(before["spend"]) == cost
    assert _money(after["reserved"]) == 0


def test_stream_is_settled_before_done(quiet_stack: Stack) -> None:
    """The official SDK stops reading at ``[DONE]``: by then the request must be settled,
    so the spend and the row are visible within a second of it."""
    stack = quiet_stack
    spend_before = _money(_user(stack.base_url, "tester")["spend"])
    with (
        stack.openai_client() as client,
        client.chat.completions.with_streaming_response.create(
            model="openai:gpt-4o", messages=[{"role": "user", "content": WORDS}], stream=True
        ) as response,
    ):
        request_id = response.headers[REQUEST_ID]
        text = "".join(
            chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
        )
        done_at = time.monotonic()
    assert text == "echo: " + WORDS
    user = _wait_user(
        stack.base_url,
        "tester",
        lambda u: _money(u["spend"]) > spend_before,
        SETTLE_WITHIN,
    )
    spend_seen_after = time.monotonic() - done_at
    row, _ = _wait_row(stack.base_url, "tester", request_id, within=SETTLE_WITHIN)
    row_seen_after = time.monotonic() - done_at
    assert spend_seen_after <= SETTLE_WITHIN, f"spend moved {spend_seen_after:.2f} s after [DONE]"
    assert row_seen_after <= SETTLE_WITHIN, f"row readable {row_seen_after:.2f} s after [DONE]"
    assert row["status"] == "success"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT, COMPLETION)
    assert _money(user["spend"]) - spend_before == _money(row["cost"]) > 0


BUDGETED = "usage-rows-budgeted"


@pytest.fixture(scope="module")
def budgeted_key(stack: Stack) -> str:
    """A key on the shared stack whose user has a budget, so its requests hold money."""
    return _budgeted_key(stack.base_url, BUDGETED)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_upstream_error_row_costs_nothing_and_releases_the_hold(
    stack: Stack, budgeted_key: str, stream: bool
) -> None:
    spend_before = _money(_user(stack.base_url, BUDGETED)["spend"])
    stack.openai_fake.fail_next(500)
    with (
        stack.openai_client(api_key=budgeted_key) as client,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        client.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=[{"role": "user", "content": WORDS}],
            stream=stream,
        )
    assert caught.value.status_code == 502
    request_id = caught.value.response.headers[REQUEST_ID]
    row, rows = _wait_row(stack.base_url, BUDGETED, request_id)
    assert (row["status"], row["status_code"]) == ("error", 502)
    assert row["error_message"]
    assert (row["model"], row["provider"], row["endpoint"]) == ("gpt-4o-mini", "openai", "chat")
    assert _money(row["cost"]) == 0
    assert row["latency_ms"] >= 0
    assert len([r for r in rows if r["id"] == request_id]) == 1
    user = _wait_user(stack.base_url, BUDGETED, lambda u: _money(u["reserved"]) == 0, 1.0)
    assert _money(user["reserved"]) == 0, "the failed request's hold was not released"
    assert _money(user["spend"]) == spend_before


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_cut_short_is_billed_for_what_reached_the_client(
    stack: Stack, budgeted_key: str, provider: str
) -> None:
    # The upstream died after output reached the client. OpenAI reports usage only at the
    # end (so this used to cost 0); Anthropic only its running count. The provider bills
    # the input and what it generated: the relayed events stand in for the missing count.
    fake = stack.openai_fake if provider == "openai" else stack.anthropic_fake
    model = "gpt-4o-mini" if provider == "openai" else "claude-sonnet-4-5"
    fake.drop_stream_next(after_events=8)
    with stack.openai_client(api_key=budgeted_key) as client:
        stream = client.chat.completions.create(
            model=f"{provider}:{model}",
            messages=[{"role": "user", "content": WORDS}],
            stream=True,
        )
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
        request_id = stream.response.headers[REQUEST_ID]
    row, _ = _wait_row(stack.base_url, BUDGETED, request_id)
    assert (row["status"], row["status_code"]) == ("error", 502)
    assert row["prompt_tokens"] >= PROMPT
    assert 3 <= row["completion_tokens"] <= 8
    assert _money(row["cost"]) > 0
    user = _wait_user(stack.base_url, BUDGETED, lambda u: _money(u["reserved"]) == 0, 1.0)
    assert _money(user["reserved"]) == 0


def test_a_budgeted_success_is_billed_and_its_hold_released(
    stack: Stack, budgeted_key: str
) -> None:
    """Control for the error case: the same user's successful stream holds and settles."""
    spend_before = _money(_user(stack.base_url, BUDGETED)["spend"])
    with (
        stack.openai_client(api_key=budgeted_key) as client,
        client.chat.completions.with_streaming_response.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": WORDS}], stream=True
        ) as response,
    ):
        request_id = response.headers[REQUEST_ID]
        list(response.parse())
    row, _ = _wait_row(stack.base_url, BUDGETED, request_id)
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"]) == (
        "success",
        PROMPT,
        COMPLETION,
    )
    assert _money(row["cost"]) == _expected_cost(stack, row) > 0
    user = _wait_user(stack.base_url, BUDGETED, lambda u: _money(u["reserved"]) == 0, 1.0)
    assert _money(user["reserved"]) == 0
    assert _money(user["spend"]) - spend_before == _money(row["cost"])


# --------------------------------------------------------------------------- disconnect

STREAM_INTERVAL = 0.2
LONG_PROMPT = " ".join(f"word{i}" for i in range(40))
INPUT_PRICE, OUTPUT_PRICE = Decimal(1), Decimal(2)  # USD per token (× 1,000,000 per million)


@dataclass
class SlowGateway:
    process: GatewayProcess
    key: str

    @property
    def base_url(self) -> str:
        return self.process.base_url


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowGateway]:
    prices = {
        "input_price_per_million": int(INPUT_PRICE * 1_000_000),
        "output_price_per_million": int(OUTPUT_PRICE * 1_000_000),
    }
    with (
        FakeOpenAI(stream_interval=STREAM_INTERVAL) as oai,
        FakeAnthropic(stream_interval=STREAM_INTERVAL) as ant,
    ):
        config: dict[str, Any] = {
            "master_key": MASTER_KEY,
            "providers": {
                "openai": {"api_key": oai.api_key, "api_base": oai.base_url + "/v1"},
                "anthropic": {"api_key": ant.api_key, "api_base": ant.base_url},
            },
            "pricing": {"openai:gpt-4o-mini": prices, "anthropic:claude-sonnet-4-5": prices},
        }
        workdir: Path = tmp_path_factory.mktemp("usage-rows-slow")
        gateway = GatewayProcess(config, workdir, env=FAST_IMPORTS)
        gateway.start()
        try:
            yield SlowGateway(gateway, _budgeted_key(gateway.base_url, "leaver"))
        finally:
            gateway.stop()


def _request_id_of(received: bytes) -> str:
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status_line, *lines = head.split("\r\n")
    assert " 200 " in status_line + " ", received[:300]
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == REQUEST_ID:
            return value.strip()
    raise AssertionError(f"no {REQUEST_ID} header in {head!r}")


DISCONNECTS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "chat": (
        "/v1/chat/completions",
        {
            "model": "openai:gpt-4o-mini",
            "messages": [{"role": "user", "content": LONG_PROMPT}],
            "stream": True,
        },
        "gpt-4o-mini",
        "openai",
    ),
    "messages": (
        "/v1/messages",
        {
            "model": "anthropic:claude-sonnet-4-5",
            "max_tokens": 200,
            "messages": [{"role": "user", "content": LONG_PROMPT}],
            "stream": True,
        },
        "claude-sonnet-4-5",
        "anthropic",
    ),
}


@pytest.mark.parametrize("surface", list(DISCONNECTS))
def test_client_gone_mid_stream_is_billed_for_its_input(
    slow_gateway: SlowGateway, surface: str
) -> None:
    path, body, model, provider = DISCONNECTS[surface]
    received = asyncio.run(
        read_one_event_then_hang_up(slow_gateway.process.port, slow_gateway.key, path, body)
    )
    assert b"data:" in received
    request_id = _request_id_of(received)
    row, rows = _wait_row(slow_gateway.base_url, "leaver", request_id)
    assert (row["status"], row["status_code"]) == ("error", 499)
    assert (row["model"], row["provider"]) == (model, provider)
    assert row["prompt_tokens"] > 0, "a client that leaves is billed at least for its input"
    assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]
    cost = _money(row["cost"])
    assert cost > 0
    assert cost == row["prompt_tokens"] * INPUT_PRICE + row["completion_tokens"] * OUTPUT_PRICE
    assert len([r for r in rows if r["id"] == request_id]) == 1
    user = _wait_user(slow_gateway.base_url, "leaver", lambda u: _money(u["reserved"]) == 0, 1.0)
    assert _money(user["reserved"]) == 0, "the hold of a client that left was not released"
    assert _money(user["spend"]) == sum((_money(r["cost"]) for r in rows), Decimal(0))


# --------------------------------------------------------------------------- leaving at the end
#
# Settlement runs between the upstream's end and the terminal event, and with token limits
# on a shared (Redis) limiter it awaits a Redis round trip there. A client that hangs up in
# that window must still be settled exactly once: one row, the hold released. The limiter
# is pointed at a real redis-server through a proxy that holds each reply back a little, so
# the window is wide enough to hang up in deterministically.

REDIS_REPLY_DELAY = 0.15  # below the limiter's 0.25 s socket timeout


class DelayingProxy:
    """TCP proxy to ``target_port`` that forwards every reply ``delay`` seconds late
    (settable at any time)."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self.delay = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> DelayingProxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(5)
        for sock in sockets:
            sock.close()
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._target_port))
            with self._lock:
                self._sockets += [client, server]
            self._spawn(self._pump, client, server, False)
            self._spawn(self._pump, server, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, delayed: bool) -> None:
        try:
            while data := source.recv(65536):
                if delayed and self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def _redis_server() -> Iterator[int]:
    """A throwaway redis-server on a free port (stopped by its own PID)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _hang_up_after_last_chunk(port: int, key: str, body: dict[str, Any]) -> bytes:
    """Read a chat stream up to its last content chunk, wait a moment, hang up."""
    payload = orjson.dumps(body)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(head + payload)
        await writer.drain()
        async with asyncio.timeout(10):
            while b'"finish_reason":"stop"' not in received.replace(b" ", b""):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
        # The upstream (an instant fake) is done by now: the gateway is settling.
        await asyncio.sleep(REDIS_REPLY_DELAY / 3)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return received


def test_client_gone_while_the_stream_settles_is_still_settled(tmp_path: Path) -> None:
    prices = {
        "input_price_per_million": int(INPUT_PRICE * 1_000_000),
        "output_price_per_million": int(OUTPUT_PRICE * 1_000_000),
    }
    body: dict[str, Any] = {
        "model": "openai:gpt-4o-mini",
        "messages": [{"role": "user", "content": WORDS}],
        "stream": True,
    }
    with (
        _redis_server() as redis_port,
        DelayingProxy(redis_port) as proxy,
        FakeOpenAI() as fake,
    ):
        config: dict[str, Any] = {
            "master_key": MASTER_KEY,
            "redis_url": f"redis://127.0.0.1:{proxy.port}/0",
            "providers": {"openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"}},
            "pricing": {"openai:gpt-4o-mini": prices},
        }
        gateway = GatewayProcess(config, tmp_path, env=FAST_IMPORTS)
        gateway.start()
        try:
            key = _budgeted_key(gateway.base_url, "late-leaver", tpm_limit=1_000_000)
            # Warm-up at full speed: the limiter's pooled connection and scripts are ready,
            # so each later limiter call is one (delayed) round trip.
            with (
                openai.OpenAI(
                    api_key=key, base_url=gateway.base_url + "/v1", max_retries=0, timeout=20
                ) as client,
                client.chat.completions.with_streaming_response.create(**body) as response,
            ):
                warm_up_id = response.headers[REQUEST_ID]
                list(response.parse())
            proxy.delay = REDIS_REPLY_DELAY
            received = asyncio.run(_hang_up_after_last_chunk(gateway.port, key, body))
            proxy.delay = 0.0
            assert b'"finish_reason":"stop"' in received.replace(b" ", b""), received[-500:]
            assert b"[DONE]" not in received, "the client must leave before the terminal event"
            request_id = _request_id_of(received)
            deadline = time.monotonic() + ROW_WITHIN
            while True:
                rows = _rows(gateway.base_url, "late-leaver")
                user = _user(gateway.base_url, "late-leaver")
                mine = [row for row in rows if row["id"] == request_id]
                if (mine and _money(user["reserved"]) == 0) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            gateway.stop()
    assert "rate_limiter_unavailable" not in gateway.logs(), "the limiter failed open: no race"
    reserved = _money(user["reserved"])
    assert len(mine) == 1, (
        f"a client that left while its stream was settling got {len(mine)} usage rows "
        f"and its hold was not released (reserved still {reserved})"
    )
    assert {row["id"] for row in rows} == {warm_up_id, request_id}
    row = mine[0]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT, COMPLETION)
    assert _money(row["cost"]) == PROMPT * INPUT_PRICE + COMPLETION * OUTPUT_PRICE
    assert reserved == 0
    assert _money(user["spend"]) == sum((_money(r["cost"]) for r in rows), Decimal(0))


# --------------------------------------------------------------------------- the ledger


@pytest.mark.parametrize("user_id", ["tester", BUDGETED])
def test_spend_equals_the_sum_of_the_users_rows(
    stack: Stack, budgeted_key: str, user_id: str
) -> None:
    """After everything above (successes, failures): spend == Σ cost, nothing held."""
    deadline = time.monotonic() + 2.0
    while True:
        user = _user(stack.base_url, user_id)
        rows = _rows(stack.base_url, user_id)
        total = sum((_money(row["cost"]) for row in rows), Decimal(0))
        settled = _money(user["reserved"]) == 0 and _money(user["spend"]) == total
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len({row["id"] for row in rows}) == len(rows)
    assert _money(user["reserved"]) == 0
    assert _money(user["spend"]) == total
