"""JSON response formats on Anthropic: a forced tool going up, its input as content coming back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from otari_gateway.translate.chat_stream import MessagesToChatStream
from otari_gateway.translate.chat_to_messages import (
    chat_request_to_messages,
    messages_response_to_chat,
)
from otari_gateway.translate.errors import TranslationError
from otari_gateway.translate.responses_to_chat import responses_request_to_chat

USER = [{"role": "user", "content": "a city"}]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "City", "schema": SCHEMA, "strict": True},
}


def _request(**extra: Any) -> dict[str, Any]:
    return chat_request_to_messages({"messages": USER, **extra}, "claude-sonnet-4-5")


def test_json_schema_becomes_a_forced_tool() -> None:
    out = _request(response_format=JSON_SCHEMA, reasoning_effort="high", max_tokens=20_000)
    [tool] = out["tools"]
    assert tool["name"] == "City"
    assert tool["input_schema"] == SCHEMA
    assert out["tool_choice"] == {"type": "tool", "name": "City"}
    # Anthropic refuses thinking beside a forced tool.
    assert "thinking" not in out
    assert "response_format" not in out


def test_json_object_and_nameless_schemas_get_a_tool_of_the_gateways_naming() -> None:
    out = _request(response_format={"type": "json_object"})
    assert out["tools"][0]["name"] == "json_response"
    assert out["tools"][0]["input_schema"] == {"type": "object"}
    nameless = {"type": "json_schema", "json_schema": {"name": "no spaces!", "schema": {}}}
    out = _request(response_format=nameless)
    assert out["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert out["tools"][0]["input_schema"] == {"type": "object"}


def test_text_format_is_left_as_it_is() -> None:
    assert "tools" not in _request(response_format={"type": "text"})


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "response_format together with tools",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"type": "array"}},
                }
            },
            "must describe an object",
        ),
        ({"response_format": {"type": "json_schema"}}, "json_schema must be an object"),
    ],
)
def test_what_a_forced_tool_cannot_carry_is_refused(extra: dict[str, Any], named: str) -> None:
    body = {"response_format": JSON_SCHEMA, **extra}
    with pytest.raises(TranslationError, match=named):
        _request(**body)


def test_responses_text_format_reaches_the_forced_tool() -> None:
    text = {"format": {"type": "json_schema", "name": "City", "schema": SCHEMA}}
    chat = responses_request_to_chat({"input": "a city", "text": text}, "claude-sonnet-4-5")
    out = chat_request_to_messages(chat, "claude-sonnet-4-5")
    assert out["tool_choice"] == {"type": "tool", "name": "City"}


def _answer(stop_reason: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "City", "input": {"name": "Oslo"}}
        ],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 3, "output_tokens": 5},
    }


def test_the_forced_tools_input_is_the_content() -> None:
    out = messages_response_to_chat(_answer("tool_use"), "m", created=0, json_answer=True)
    [choice] = out["choices"]
    assert orjson.loads(choice["message"]["content"]) == {"name": "Oslo"}
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"
    cut = messages_response_to_chat(_answer("max_tokens"), "m", created=0, json_answer=True)
    assert cut["choices"][0]["finish_reason"] == "length"


def test_a_streamed_json_answer_is_content_deltas() -> None:
    stream = MessagesToChatStream("m", created=0, include_usage=False, json_answer=True)
    tool = {"type": "tool_use", "id": "toolu_1", "name": "City", "input": {}}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {}}},
        {"type": "content_block_start", "index": 0, "content_block": tool},
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in ("", '{"name": ', '"Oslo"}')
        ),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}},
    ]
    chunks = [chunk for event in events for chunk in stream.feed(event)]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert all("tool_calls" not in delta for delta in deltas)
    content = "".join(delta.get("content") or "" for delta in deltas)
    assert orjson.loads(content) == {"name": "Oslo"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
