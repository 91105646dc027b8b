"""``/v1/responses`` on upstreams without a Responses API, through the real gateway.

The official ``openai`` SDK talks to the gateway; the gateway bridges onto the fake
Anthropic upstream (``/v1/messages``) and onto the ``chatonly`` instance, an
OpenAI-compatible fake configured with ``native_responses: false`` (``/v1/chat/completions``).
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.integration.conftest import Stack

ANTHROPIC = "anthropic:claude-sonnet-4-5"
CHAT_ONLY = "chatonly:local-model"
TOOLS: Any = [
    {
        "type": "function",
        "name": "search",
        "description": "Search the web",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
CALL_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


def _collapsed(types: list[str]) -> list[str]:
    """Event types with runs of the same delta event folded into one."""
    out: list[str] = []
    for kind in types:
        if not (out and out[-1] == kind and kind.endswith(".delta")):
            out.append(kind)
    return out


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_non_stream(stack: Stack) -> None:
    with stack.openai_client() as client:
        response = client.responses.create(
            model=ANTHROPIC,
            input="ping pong",
            instructions="be terse",
            max_output_tokens=50,
            temperature=0.25,
            top_p=0.5,
            store=True,
        )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "claude-sonnet-4-5"
    assert response.output_text == "echo: ping pong"
    assert response.usage is not None
    # The fake counts words of system + messages ("be terse" + "ping pong").
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 3)
    assert response.usage.total_tokens == 7
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    sent = stack.anthropic_fake.last_request
    assert sent.path == "/v1/messages"
    body = sent.json_object()
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] == "be terse"
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "ping pong"}]}
    ]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (50, 0.25, 0.5)


def test_anthropic_default_max_tokens_and_message_list(stack: Stack) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    with stack.openai_client() as client:
        response = client.responses.create(
            model=ANTHROPIC,
            input=[
                {"role": "developer", "content": "answer briefly"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look at"},
                        {"type": "input_image", "image_url": image, "detail": "auto"},
                    ],
                },
            ],
        )
    assert response.output_text == "echo: look at"
    body = stack.anthropic_fake.last_request.json_object()
    assert body["max_tokens"] == 4096
    assert body["system"] == "answer briefly"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }


def test_anthropic_function_call_round_trip(stack: Stack) -> None:
    with stack.openai_client() as client:
        first = client.responses.create(
            model=ANTHROPIC, input="tides", tools=TOOLS, tool_choice="required"
        )
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1
        call = calls[0]
        assert call.type == "function_call"
        assert call.call_id == "toolu_fake_1"
        assert call.name == "search"
        assert orjson.loads(call.arguments) == {"query": "tides"}
        sent = stack.anthropic_fake.last_request.json_object()
        assert sent["tools"][0]["name"] == "search"
        assert sent["tool_choice"] == {"type": "any"}
        second = client.responses.create(
            model=ANTHROPIC,
            tools=TOOLS,
            input=[
                {"role": "user", "content": "tides"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "high at 6"},
            ],
        )
    assert second.output_text == "echo: tides"
    messages = stack.anthropic_fake.last_request.json_object()["messages"]
    assert messages[1]["content"][0]["type"] == "tool_use"
    assert messages[1]["content"][0]["id"] == "toolu_fake_1"
    assert messages[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_fake_1",
        "content": "high at 6",
    }


def test_anthropic_stream_event_sequence(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.responses.create(model=ANTHROPIC, input="ping pong", stream=True) as stream,
    ):
        events = list(stream)
    types = [event.type for event in events]
    assert _collapsed(types) == TEXT_EVENTS
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: ping pong"
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.type == "response.output_text.done" and done.text == text
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.status == "completed"
    assert completed.response.id == events[0].response.id
    assert events[0].response.model == completed.response.model == "claude-sonnet-4-5"
    assert completed.response.output_text == text
    assert completed.response.usage is not None
    assert (completed.response.usage.input_tokens, completed.response.usage.output_tokens) == (
        2,
        3,
    )
    assert stack.anthropic_fake.last_request.json_object()["stream"] is True


def test_anthropic_stream_helper_with_function_call(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.responses.stream(model=ANTHROPIC, input="find cats", tools=TOOLS) as stream,
    ):
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert _collapsed(types) == CALL_EVENTS
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].type == "function_call"
    assert orjson.loads(calls[0].arguments) == {"query": "find cats"}
    assert calls[0].call_id.startswith("toolu_fake_")


def test_anthropic_stream_cut_short_ends_in_an_error_event(stack: Stack) -> None:
    stack.anthropic_fake.drop_stream_next(after_events=3)
    with (
        stack.openai_client() as client,
        client.responses.create(model=ANTHROPIC, input="ping", stream=True) as stream,
    ):
        events = list(stream)
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "error"
    assert "response.completed" not in types
    assert [event.sequence_number for event in events] == list(range(len(events)))


@pytest.mark.parametrize("after_events", [0, 3])
def test_stream_helper_gets_the_error_event_of_a_cut_stream(
    stack: Stack, after_events: int
) -> None:
    stack.anthropic_fake.drop_stream_next(after_events=after_events)
    with (
        stack.openai_client() as client,
        client.responses.stream(model=ANTHROPIC, input="ping") as stream,
    ):
        events = list(stream)
    assert events[0].type == "response.created"
    error = events[-1]
    assert error.type == "error"
    assert "stream before it was complete" in error.message
    assert [event.sequence_number for event in events] == list(range(len(events)))


# --------------------------------------------------------------------------- chat-only


def test_chat_only_non_stream(stack: Stack) -> None:
    with stack.openai_client() as client:
        response = client.responses.create(
            model=CHAT_ONLY,
            input="hello there",
            instructions="be kind",
            max_output_tokens=20,
            reasoning={"effort": "low"},
            text={"format": {"type": "json_object"}},
        )
    assert response.status == "completed"
    assert response.model == "local-model"
    assert response.output_text == "echo: hello there"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 3)
    sent = stack.local_fake.last_request
    assert sent.path == "/v1/chat/completions"
    body = sent.json_object()
    assert body["model"] == "local-model"
    assert body["messages"] == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hello there"},
    ]
    assert body["max_tokens"] == 20
    assert body["reasoning_effort"] == "low"
    assert body["response_format"] == {"type": "json_object"}
    assert all(r.path != "/v1/responses" for r in stack.local_fake.requests)


def test_chat_only_stream_event_sequence(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.responses.create(model=CHAT_ONLY, input="one two three", stream=True) as stream,
    ):
        events = list(stream)
    assert _collapsed([event.type for event in events]) == TEXT_EVENTS
    assert [event.sequence_number for event in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "echo: one two three"
    assert events[0].response.model == completed.response.model == "local-model"
    assert completed.response.usage is not None
    assert (completed.response.usage.input_tokens, completed.response.usage.output_tokens) == (
        3,
        4,
    )
    body = stack.local_fake.last_request.json_object()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_chat_only_function_call_stream_and_tool_choice(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.responses.stream(
            model=CHAT_ONLY,
            input="find dogs",
            tools=TOOLS,
            tool_choice={"type": "function", "name": "search"},
        ) as stream,
    ):
        events = list(stream)
        final = stream.get_final_response()
    assert _collapsed([event.type for event in events]) == CALL_EVENTS
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.type == "response.function_call_arguments.done"
    assert orjson.loads(done.arguments) == {"query": "find dogs"}
    call = final.output[0]
    assert call.type == "function_call"
    assert call.call_id == "call_fake_1"
    body = stack.local_fake.last_request.json_object()
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
    assert body["tool_choice"] == {"type": "function", "function": {"name": "search"}}


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("model", [ANTHROPIC, CHAT_ONLY])
def test_previous_response_id_is_refused_by_name(stack: Stack, model: str) -> None:
    with stack.openai_client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input="again", previous_response_id="resp_123")
    body = orjson.loads(caught.value.response.content)
    assert body["error"]["param"] == "previous_response_id"
    assert body["error"]["code"] == "unsupported_parameter"
    assert "previous_response_id" in body["error"]["message"]
    assert stack.anthropic_fake.requests == []
    assert stack.local_fake.requests == []


def test_hosted_tool_is_refused(stack: Stack) -> None:
    with stack.openai_client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=ANTHROPIC, input="news", tools=[{"type": "web_search"}])
    assert "web_search" in orjson.loads(caught.value.response.content)["error"]["message"]
    assert stack.anthropic_fake.requests == []


def test_native_instance_still_relays_responses(stack: Stack) -> None:
    with stack.openai_client() as client:
        response = client.responses.create(model="local:local-model", input="direct")
    assert response.output_text == "echo: direct"
    assert stack.local_fake.last_request.path == "/v1/responses"
