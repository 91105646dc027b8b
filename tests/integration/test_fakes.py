"""Self-test of the fake upstreams: the official OpenAI and Anthropic SDKs, pointed
straight at the fakes, must parse every reply, stream and fault they produce."""

from __future__ import annotations

import base64
import math
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI

OPENAI_KEY = "sk-test-openai-key"
ANTHROPIC_KEY = "sk-ant-test-key"
TOOLS_OPENAI: Any = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
TOOLS_ANTHROPIC: Any = [
    {
        "name": "search",
        "description": "Search the web",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
USER: Any = [{"role": "user", "content": "hello brave new world"}]


@pytest.fixture(scope="module")
def oai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(OPENAI_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def ant_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture
def oai(oai_fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    oai_fake.reset()
    url = oai_fake.base_url + "/v1"
    with openai.OpenAI(base_url=url, api_key=OPENAI_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def ant(ant_fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    ant_fake.reset()
    with anthropic.Anthropic(
        base_url=ant_fake.base_url, api_key=ANTHROPIC_KEY, max_retries=0
    ) as client:
        yield client


def raw_post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


# --------------------------------------------------------------------------- lifecycle


def test_lifecycle_starts_and_stops_thread() -> None:
    fake = FakeOpenAI()
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    fake.start()
    assert fake.base_url.startswith("http://127.0.0.1:")
    thread = fake._thread
    assert thread is not None and thread.is_alive()
    fake.stop()
    fake.stop()  # idempotent
    assert not thread.is_alive()
    with FakeAnthropic() as again:  # restartable instances, context manager
        assert again.base_url


def test_requests_are_recorded(oai: openai.OpenAI, oai_fake: FakeOpenAI) -> None:
    oai.chat.completions.create(model="gpt-4o-mini", messages=USER, extra_query={"x": "1"})
    recorded = oai_fake.last_request
    assert (recorded.method, recorded.path, recorded.query) == (
        "POST",
        "/v1/chat/completions",
        {"x": "1"},
    )
    assert recorded.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert recorded.json is not None
    assert recorded.json["messages"] == USER
    assert orjson.loads(recorded.body) == recorded.json
    oai_fake.clear()
    assert oai_fake.requests == []


# --------------------------------------------------------------------------- openai chat


def test_chat_non_stream(oai: openai.OpenAI) -> None:
    system: Any = {"role": "system", "content": "be brief"}
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=[system, *USER])
    choice = completion.choices[0]
    assert choice.message.content == "echo: hello brave new world"
    assert choice.finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (6, 5)
    assert completion.usage.total_tokens == 11


def test_chat_multiple_choices_and_parts(oai: openai.OpenAI) -> None:
    parts = [{"type": "text", "text": "first part"}, {"type": "text", "text": "second"}]
    messages: Any = [{"role": "user", "content": parts}]
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert {c.message.content for c in completion.choices} == {"echo: first part second"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 8


def test_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    with stream:
        chunks = list(stream)
    assert all("usage" in chunk.model_fields_set for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello brave new world"
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (4, 5)


def test_chat_stream_without_usage(oai: openai.OpenAI) -> None:
    with oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True) as stream:
        chunks = list(stream)
    assert all("usage" not in chunk.model_fields_set for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_tool_call(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=TOOLS_OPENAI)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "call_fake_1"
    assert call.type == "function"
    assert call.function.name == "search"
    assert orjson.loads(call.function.arguments) == {"query": "hello brave new world"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5


def test_chat_tool_call_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=TOOLS_OPENAI, stream=True
    )
    with stream:
        chunks = list(stream)
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    assert first.tool_calls is not None
    assert first.tool_calls[0].id == "call_fake_1"
    assert first.tool_calls[0].function is not None
    assert first.tool_calls[0].function.name == "search"
    assert first.tool_calls[0].function.arguments == ""
    fragments = [
        call.function.arguments or ""
        for chunk in chunks[1:]
        for call in chunk.choices[0].delta.tool_calls or []
        if call.function is not None
    ]
    assert len(fragments) > 1
    assert orjson.loads("".join(fragments)) == {"query": "hello brave new world"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_chat_tool_result_gets_text(oai: openai.OpenAI) -> None:
    call = {"id": "call_x", "type": "function", "function": {"name": "search", "arguments": "{}"}}
    messages: list[Any] = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_x", "content": "sunny"},
    ]
    completion = oai.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=TOOLS_OPENAI
    )
    assert completion.choices[0].message.content == "echo: hello brave new world"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 5


# --------------------------------------------------------------------------- openai responses


def test_responses_non_stream(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model="gpt-4o-mini", input="tell me a joke", instructions="be fun"
    )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "echo: tell me a joke"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (6, 5)
    assert response.usage.total_tokens == 11
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_responses_message_list_input(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model="gpt-4o-mini",
        input=[
            {"role": "user", "content": "old question"},
            {"role": "assistant", "content": "old answer"},
            {"role": "user", "content": [{"type": "input_text", "text": "new question"}]},
        ],
    )
    assert response.output_text == "echo: new question"


def test_responses_stream_events(oai: openai.OpenAI) -> None:
    with oai.responses.create(model="gpt-4o-mini", input="hi there", stream=True) as stream:
        events = list(stream)
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "echo: hi there"
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 3


def test_responses_stream_helper_final_response(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4o-mini", input="hi there") as stream:
        final = stream.get_final_response()
    assert final.output_text == "echo: hi there"
    assert final.usage is not None
    assert final.usage.input_tokens == 2


def test_responses_function_call(oai: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "name": "search", "parameters": {"type": "object"}}]
    response = oai.responses.create(model="gpt-4o-mini", input="find cats", tools=tools)
    item = response.output[0]
    assert item.type == "function_call"
    assert (item.name, item.call_id) == ("search", "call_fake_1")
    assert orjson.loads(item.arguments) == {"query": "find cats"}
    with oai.responses.stream(model="gpt-4o-mini", input="find cats", tools=tools) as stream:
        final = stream.get_final_response()
    streamed = final.output[0]
    assert streamed.type == "function_call"
    assert orjson.loads(streamed.arguments) == {"query": "find cats"}
    result = oai.responses.create(
        model="gpt-4o-mini",
        tools=tools,
        input=[
            {"role": "user", "content": "find cats"},
            {"type": "function_call", "call_id": "c1", "name": "search", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "3 cats"},
        ],
    )
    assert result.output_text == "echo: find cats"


# --------------------------------------------------------------------------- embeddings, models


def test_embeddings(oai: openai.OpenAI) -> None:
    single = oai.embeddings.create(model="text-embedding-3-small", input="hello world")
    assert len(single.data) == 1
    vector = single.data[0].embedding
    assert len(vector) == 8
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-4)
    assert single.usage.prompt_tokens == single.usage.total_tokens == 2
    batch = oai.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert [d.index for d in batch.data] == [0, 1]
    assert batch.data[0].embedding == vector
    assert batch.data[1].embedding != vector
    encoded = oai.embeddings.create(
        model="text-embedding-3-small", input="hello world", encoding_format="base64"
    )
    raw = encoded.data[0].embedding
    decoded = raw if isinstance(raw, list) else list(struct.unpack("<8f", base64.b64decode(raw)))
    assert decoded == pytest.approx(vector, abs=1e-6)


def test_models_list(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]


# --------------------------------------------------------------------------- openai errors


def test_openai_errors(oai: openai.OpenAI, oai_fake: FakeOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        oai.chat.completions.create(model="missing-model", messages=USER)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError) as auth:
        oai.with_options(api_key="sk-wrong-key-123").models.list()
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=[])
    url = oai_fake.base_url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {OPENAI_KEY}", "Content-Type": "application/json"}
    status, _, body = raw_post(url, b"{not json", headers)
    assert status == 400
    assert set(orjson.loads(body)["error"]) == {"message", "type", "param", "code"}


def test_openai_fail_next(oai: openai.OpenAI, oai_fake: FakeOpenAI) -> None:
    oai_fake.fail_next(500, times=2)
    oai_fake.fail_next(429, headers={"retry-after": "7"})
    oai_fake.fail_next(503, body={"error": {"message": "custom", "type": "x", "param": None}})
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as server:
            oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert server.value.type == "server_error"
    with pytest.raises(openai.RateLimitError) as limited:
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError, match="custom"):
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    assert oai.chat.completions.create(model="gpt-4o-mini", messages=USER).choices
    assert len(oai_fake.requests) == 5


def test_openai_drop_stream(oai: openai.OpenAI, oai_fake: FakeOpenAI) -> None:
    oai_fake.drop_stream_next(2)
    received: list[Any] = []
    stream = oai.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    with stream, pytest.raises(openai.APIConnectionError):
        received.extend(stream)
    assert len(received) == 2
    oai_fake.drop_stream_next(3)
    events: list[Any] = []
    events_stream = oai.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    with events_stream, pytest.raises(openai.APIConnectionError):
        events.extend(events_stream)
    assert [e.type for e in events][-1] != "response.completed"
    oai_fake.drop_stream_next(0)
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert oai.chat.completions.create(model="gpt-4o-mini", messages=USER).choices


def test_openai_delay_times_out(oai: openai.OpenAI, oai_fake: FakeOpenAI) -> None:
    oai_fake.delay_next(1.0)
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).chat.completions.create(model="gpt-4o-mini", messages=USER)
    oai_fake.delay_next(0.2)
    completion = oai.with_options(timeout=5).chat.completions.create(
        model="gpt-4o-mini", messages=USER
    )
    assert completion.choices[0].message.content == "echo: hello brave new world"


# --------------------------------------------------------------------------- anthropic


def test_messages_create(ant: anthropic.Anthropic, ant_fake: FakeAnthropic) -> None:
    message = ant.messages.create(model="claude-test", max_tokens=64, messages=USER)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello brave new world"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 5)
    assert message.usage.cache_read_input_tokens == 0
    headers = ant_fake.last_request.headers
    assert headers["anthropic-version"]
    assert ANTHROPIC_KEY in (headers.get("x-api-key"), headers.get("authorization", "")[7:])


def test_messages_cache_read(ant: anthropic.Anthropic) -> None:
    system: Any = [
        {"type": "text", "text": "long cached system", "cache_control": {"type": "ephemeral"}}
    ]
    message = ant.messages.create(model="claude-test", max_tokens=64, system=system, messages=USER)
    assert message.usage.cache_read_input_tokens == 3
    assert message.usage.input_tokens == 7


def test_messages_tool_use(ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(
        model="claude-test", max_tokens=64, messages=USER, tools=TOOLS_ANTHROPIC
    )
    block = message.content[0]
    assert block.type == "tool_use"
    assert (block.id, block.name) == ("toolu_fake_1", "search")
    assert block.input == {"query": "hello brave new world"}
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 5
    follow_up: Any = [
        *USER,
        {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}],
        },
    ]
    answer = ant.messages.create(
        model="claude-test", max_tokens=64, messages=follow_up, tools=TOOLS_ANTHROPIC
    )
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "echo: hello brave new world"


def test_messages_stream_events(ant: anthropic.Anthropic) -> None:
    with ant.messages.create(model="claude-test", max_tokens=64, messages=USER, stream=True) as s:
        events = list(s)
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == 4
    assert start.message.usage.output_tokens == 1
    assert delta.type == "message_delta"
    assert delta.usage.output_tokens == 5
    assert delta.delta.stop_reason == "end_turn"


def test_messages_raw_sse_has_event_lines_and_ping(ant_fake: FakeAnthropic) -> None:
    ant_fake.reset()
    body = {"model": "claude-test", "max_tokens": 8, "messages": USER, "stream": True}
    headers = {
        "x-api-key": ANTHROPIC_KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    status, response_headers, raw = raw_post(
        ant_fake.base_url + "/v1/messages", orjson.dumps(body), headers
    )
    assert status == 200
    assert response_headers["Content-Type"].startswith("text/event-stream")
    names = [line[7:] for line in raw.decode().splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_messages_stream_helper(ant: anthropic.Anthropic) -> None:
    with ant.messages.stream(model="claude-test", max_tokens=64, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello brave new world"
    assert final.content[0].type == "text"
    assert final.usage.output_tokens == 5
    with ant.messages.stream(
        model="claude-test", max_tokens=64, messages=USER, tools=TOOLS_ANTHROPIC
    ) as stream:
        tool_message = stream.get_final_message()
    block = tool_message.content[0]
    assert block.type == "tool_use"
    assert block.id == "toolu_fake_1"
    assert block.input == {"query": "hello brave new world"}
    assert tool_message.stop_reason == "tool_use"
    assert tool_message.usage.output_tokens == 5


def test_count_tokens(ant: anthropic.Anthropic) -> None:
    count = ant.messages.count_tokens(model="claude-test", system="be brief", messages=USER)
    assert count.input_tokens == 6


def test_anthropic_errors(ant: anthropic.Anthropic, ant_fake: FakeAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError, match="not_found_error"):
        ant.messages.create(model="missing-claude", max_tokens=8, messages=USER)
    with pytest.raises(anthropic.AuthenticationError, match="authentication_error"):
        ant.with_options(api_key="sk-ant-wrong").messages.create(
            model="claude-test", max_tokens=8, messages=USER
        )
    headers = {"x-api-key": ANTHROPIC_KEY, "content-type": "application/json"}
    body = orjson.dumps({"model": "claude-test", "messages": USER})
    status, _, raw = raw_post(ant_fake.base_url + "/v1/messages", body, headers)
    assert status == 400
    assert orjson.loads(raw)["error"]["message"] == "anthropic-version: header is required"
    headers["anthropic-version"] = "2023-06-01"
    status, _, raw = raw_post(ant_fake.base_url + "/v1/messages", body, headers)
    assert status == 400
    envelope = orjson.loads(raw)
    assert envelope["type"] == "error"
    assert envelope["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    status, _, raw = raw_post(ant_fake.base_url + "/v1/messages", b"nope", headers)
    assert status == 400


def test_anthropic_fail_next(ant: anthropic.Anthropic, ant_fake: FakeAnthropic) -> None:
    ant_fake.fail_next(429)
    ant_fake.fail_next(500)
    ant_fake.fail_next(529)
    with pytest.raises(anthropic.RateLimitError) as limited:
        ant.messages.create(model="claude-test", max_tokens=8, messages=USER)
    assert limited.value.response.headers["retry-after"] == "1"
    body: Any = limited.value.body
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["message"]
    with pytest.raises(anthropic.InternalServerError):
        ant.messages.create(model="claude-test", max_tokens=8, messages=USER)
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        ant.messages.create(model="claude-test", max_tokens=8, messages=USER)
    assert overloaded.value.status_code == 529
    assert ant.messages.create(model="claude-test", max_tokens=8, messages=USER).content


def test_anthropic_drop_stream(ant: anthropic.Anthropic, ant_fake: FakeAnthropic) -> None:
    ant_fake.drop_stream_next(3)
    seen: list[str] = []
    manager = ant.messages.stream(model="claude-test", max_tokens=8, messages=USER)
    # anthropic SDK 2.x lets the transport's RemoteProtocolError escape unwrapped
    dropped = r"incomplete chunked read|Connection error"
    with manager as stream, pytest.raises(Exception, match=dropped):
        seen.extend(event.type for event in stream)
    assert "message_stop" not in seen
    assert seen[0] == "message_start"
    assert ant.messages.create(model="claude-test", max_tokens=8, messages=USER).content


def test_anthropic_delay_times_out(ant: anthropic.Anthropic, ant_fake: FakeAnthropic) -> None:
    ant_fake.delay_next(1.0)
    with pytest.raises(anthropic.APITimeoutError):
        ant.with_options(timeout=0.3).messages.create(
            model="claude-test", max_tokens=8, messages=USER
        )
