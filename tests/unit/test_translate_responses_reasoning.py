"""Reasoning on the Responses bridge: thinking out as reasoning items, and back in."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from otari_gateway.translate.chat_stream import MessagesToChatStream
from otari_gateway.translate.chat_to_messages import (
    chat_request_to_messages,
    messages_response_to_chat,
)
from otari_gateway.translate.errors import TranslationError
from otari_gateway.translate.responses_reasoning import decode_thinking, encode_thinking
from otari_gateway.translate.responses_stream import ChatToResponsesStream
from otari_gateway.translate.responses_to_chat import (
    chat_response_to_responses,
    response_envelope,
    responses_request_to_chat,
)
from otari_gateway.usage import Usage

MODEL = "claude-x"
FIRST = {"type": "thinking", "thinking": "look it up", "signature": "sig_1"}
SECOND = {"type": "thinking", "thinking": "then answer", "signature": "sig_2"}
REDACTED = {"type": "redacted_thinking", "data": "opaque=="}
CALL = {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "tides"}}
SUMMARY_EVENTS = [
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
]


def _envelope() -> dict[str, Any]:
    return response_envelope({}, response_id="resp_abc", model="client", created_at=1)


def _message(*content: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "content": list(content),
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 9},
    }


# --- encrypted_content -------------------------------------------------------------------


def test_encrypted_content_round_trips_exactly() -> None:
    blocks = [FIRST, REDACTED, SECOND]
    encoded = encode_thinking(blocks)
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_thinking(encoded, "input[0]") == blocks
    assert orjson.loads(base64.urlsafe_b64decode(encoded + "==")) == blocks


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "value",
    [
        "",
        123,
        "not base64!",
        "gAAAAABpF-fernet-token-from-openai",
        _b64(b"not json"),
        _b64(b'{"type": "thinking"}'),
        _b64(b"[]"),
        _b64(orjson.dumps([{"type": "thinking", "thinking": "t", "signature": ""}])),
        _b64(orjson.dumps([{"type": "redacted_thinking"}])),
        _b64(orjson.dumps([{"type": "text", "text": "t"}])),
        _b64(orjson.dumps([FIRST, "x"])),
    ],
)
def test_garbage_encrypted_content_is_refused_by_name(value: Any) -> None:
    body = {
        "input": [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": value}]
    }
    with pytest.raises(TranslationError, match=r"input\[0\]\.encrypted_content"):
        responses_request_to_chat(body, MODEL, replay_thinking=True)


# --- request ------------------------------------------------------------------------------


def _reasoning(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": "rs_x",
        "summary": [{"type": "summary_text", "text": "ignored"}],
        "encrypted_content": encode_thinking(list(blocks)),
    }


def _call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "search", "arguments": "{}"}


def test_reasoning_items_become_thinking_blocks_of_the_assistant_turn_they_precede() -> None:
    body = {
        "input": [
            {"role": "user", "content": "tides"},
            _reasoning(FIRST),
            _call("c1"),
            _reasoning(SECOND),
            _call("c2"),
            {"type": "function_call_output", "call_id": "c1", "output": "high"},
            {"type": "function_call_output", "call_id": "c2", "output": "low"},
            _reasoning(REDACTED),
            {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
            # Reasoning that no assistant output follows belongs to nothing.
            _reasoning(FIRST),
            {"role": "user", "content": "thanks"},
            {"type": "reasoning", "id": "rs_plain", "summary": []},
        ]
    }
    messages = responses_request_to_chat(body, MODEL, replay_thinking=True)["messages"]
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]
    assert messages[1]["thinking_blocks"] == [FIRST, SECOND]
    assert [call["id"] for call in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert messages[4] == {"role": "assistant", "content": "done", "thinking_blocks": [REDACTED]}
    assert "thinking_blocks" not in messages[5]


def test_chat_bridge_leaves_reasoning_items_out_unread() -> None:
    body = {
        "input": [
            {"role": "user", "content": "tides"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
            _call("c1"),
        ]
    }
    messages = responses_request_to_chat(body, MODEL)["messages"]
    assert "thinking_blocks" not in messages[1]


def test_replayed_blocks_lead_the_anthropic_turn_and_keep_thinking_on() -> None:
    body = {
        "input": [
            {"role": "user", "content": "tides"},
            _reasoning(FIRST),
            _call("c1"),
            {"type": "function_call_output", "call_id": "c1", "output": "high"},
        ],
        "reasoning": {"effort": "low"},
        "tools": [{"type": "function", "name": "search"}],
    }
    chat = responses_request_to_chat(body, MODEL, replay_thinking=True)
    out = chat_request_to_messages(chat, MODEL)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert out["messages"][1]["content"][0] == FIRST
    assert out["messages"][1]["content"][1]["type"] == "tool_use"


# --- response -----------------------------------------------------------------------------


def _non_streamed(message: dict[str, Any]) -> dict[str, Any]:
    chat = messages_response_to_chat(message, "client", created=1)
    return chat_response_to_responses(chat, _envelope(), Usage(), completed_at=2)


def test_thinking_becomes_a_reasoning_item_before_the_call() -> None:
    out = _non_streamed(_message(FIRST, REDACTED, SECOND, CALL))
    reasoning, call = out["output"]
    assert reasoning == {
        "id": "rs_abc_0",
        "type": "reasoning",
        "status": "completed",
        "summary": [
            {"type": "summary_text", "text": "look it up"},
            {"type": "summary_text", "text": "then answer"},
        ],
        "encrypted_content": encode_thinking([FIRST, REDACTED, SECOND]),
    }
    assert (call["type"], call["id"], call["call_id"]) == ("function_call", "fc_abc_1", "toolu_1")


def test_output_items_sent_back_as_input_replay_the_same_blocks() -> None:
    first = _non_streamed(_message(FIRST, REDACTED, CALL))
    body = {
        "input": [
            {"role": "user", "content": "tides"},
            *first["output"],
            {"type": "function_call_output", "call_id": "toolu_1", "output": "high"},
        ]
    }
    messages = responses_request_to_chat(body, MODEL, replay_thinking=True)["messages"]
    assert messages[1]["thinking_blocks"] == [FIRST, REDACTED]


# --- stream -------------------------------------------------------------------------------


def _anthropic_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream Anthropic sends for ``message``: thinking in two deltas, then its
    signature; tool input in one delta."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None}}
    ]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "thinking":
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "thinking": "", "signature": ""},
                }
            )
            half = len(block["thinking"]) // 2
            for piece in (block["thinking"][:half], block["thinking"][half:]):
                delta = {"type": "thinking_delta", "thinking": piece}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
            delta = {"type": "signature_delta", "signature": block["signature"]}
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        elif kind == "tool_use":
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                }
            )
            delta = {
                "type": "input_json_delta",
                "partial_json": orjson.dumps(block["input"]).decode(),
            }
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        else:
            events.append({"type": "content_block_start", "index": index, "content_block": block})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]}})
    return events


def _streamed(message: dict[str, Any]) -> list[dict[str, Any]]:
    chat = MessagesToChatStream("client", created=1, include_usage=False)
    responses = ChatToResponsesStream(_envelope())
    events: list[dict[str, Any]] = []
    for event in _anthropic_events(message):
        for chunk in chat.feed(event):
            events.extend(responses.feed(chunk))
    events.extend(responses.finish())
    events.append(responses.terminal(Usage(), completed_at=2))
    return events


def test_stream_event_order_for_thinking_then_a_call() -> None:
    events = _streamed(_message(FIRST, SECOND, CALL))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        *SUMMARY_EVENTS,
        *SUMMARY_EVENTS[1:],
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = events[2]
    assert added["item"] == {
        "id": "rs_abc_0",
        "type": "reasoning",
        "status": "in_progress",
        "summary": [],
        "encrypted_content": None,
    }
    parts = [e for e in events if e["type"] == "response.reasoning_summary_part.done"]
    assert [(p["summary_index"], p["part"]["text"]) for p in parts] == [
        (0, "look it up"),
        (1, "then answer"),
    ]
    first_text = [e for e in events[2:8] if e["type"].startswith("response.reasoning_summary")]
    assert {(e["item_id"], e["output_index"], e["summary_index"]) for e in first_text} == {
        ("rs_abc_0", 0, 0)
    }
    assert "".join(e["delta"] for e in first_text if e["type"].endswith("delta")) == "look it up"
    done = events[13]
    assert done["type"] == "response.output_item.done"
    assert decode_thinking(done["item"]["encrypted_content"], "x") == [FIRST, SECOND]


@pytest.mark.parametrize(
    "content",
    [(FIRST, SECOND, CALL), (REDACTED, CALL), (FIRST, REDACTED, {"type": "text", "text": "hi"})],
    ids=["two-thinking", "redacted-only", "thinking-redacted-text"],
)
def test_streamed_output_equals_the_non_streamed_one(content: tuple[dict[str, Any], ...]) -> None:
    message = {**_message(*content), "stop_reason": "end_turn"}
    streamed = _streamed(message)[-1]["response"]["output"]
    assert streamed == _non_streamed(message)["output"]
    assert streamed[0]["type"] == "reasoning"
