"""Signed thinking blocks across Chat ⇄ Messages: replayed in order, refused turns avoided,
streamed whole; and reasoning from any-llm under the name Chat clients read."""

from __future__ import annotations

from typing import Any

from any_llm.types.completion import ChatCompletion

from otari_gateway.providers.anyllm_stream import openai_json
from otari_gateway.translate.chat_stream import MessagesToChatStream
from otari_gateway.translate.chat_to_messages import (
    chat_request_to_messages,
    messages_response_to_chat,
)
from otari_gateway.translate.messages_to_chat import messages_request_to_chat
from otari_gateway.usage import Usage

SIGNED = {"type": "thinking", "thinking": "need the weather", "signature": "sig-1"}
REDACTED = {"type": "redacted_thinking", "data": "opaque"}
CALL = {
    "id": "toolu_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
}


def _tool_loop(assistant_extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [CALL], **assistant_extra},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
    ]


def _req(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"model": "alias", "messages": messages, "max_tokens": 4096, **extra}
    return chat_request_to_messages(body, "claude-sonnet-4-5")


# --- request -----------------------------------------------------------------------------


def test_thinking_blocks_go_back_first_in_their_order_before_text_and_tool_use() -> None:
    out = _req(_tool_loop({"thinking_blocks": [SIGNED, REDACTED]}), reasoning_effort="low")
    assistant = out["messages"][1]
    assert [block["type"] for block in assistant["content"]] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
    ]
    assert assistant["content"][:2] == [SIGNED, REDACTED]
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_unsigned_thinking_blocks_and_reasoning_content_are_not_replayed() -> None:
    unsigned = [{"type": "thinking", "thinking": "x", "signature": ""}, {"type": "thinking"}]
    extra = {"thinking_blocks": unsigned, "reasoning_content": "x"}
    assistant = _req(_tool_loop(extra))["messages"][1]
    assert [block["type"] for block in assistant["content"]] == ["text", "tool_use"]


def test_tool_result_turn_without_replayed_thinking_is_sent_without_thinking() -> None:
    out = _req(_tool_loop({}), reasoning_effort="high", temperature=0.2)
    assert "thinking" not in out
    # Sampling knobs stay when thinking is off.
    assert out["temperature"] == 0.2


def test_new_user_turn_after_a_tool_loop_keeps_thinking() -> None:
    messages = [*_tool_loop({}), {"role": "assistant", "content": "Cold."}]
    messages.append({"role": "user", "content": "and tomorrow?"})
    assert _req(messages, reasoning_effort="medium")["thinking"]["type"] == "enabled"


def test_anthropic_thinking_on_the_chat_body_is_kept_and_wins_over_effort() -> None:
    thinking = {"type": "enabled", "budget_tokens": 3000}
    out = _req([{"role": "user", "content": "hi"}], thinking=thinking, reasoning_effort="high")
    assert out["thinking"] == thinking
    disabled = _req([{"role": "user", "content": "hi"}], thinking={"type": "disabled"})
    assert disabled["thinking"] == {"type": "disabled"}


def test_messages_client_history_thinking_is_dropped_going_to_openai() -> None:
    body = {
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": ""},
                    REDACTED,
                    {"type": "text", "text": "a"},
                ],
            },
            {"role": "user", "content": "more"},
        ],
    }
    sent = messages_request_to_chat(body, "gpt-4o")["messages"]
    assert sent[1] == {"role": "assistant", "content": "a"}


# --- response ----------------------------------------------------------------------------


def test_response_carries_reasoning_text_and_signed_blocks_in_order() -> None:
    resp: dict[str, Any] = {
        "id": "msg_1",
        "content": [
            SIGNED,
            REDACTED,
            {"type": "thinking", "thinking": " then answer", "signature": "sig-2"},
            {"type": "text", "text": "Cold."},
        ],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 3,
            "output_tokens": 9,
            "output_tokens_details": {"thinking_tokens": 6},
        },
    }
    out = messages_response_to_chat(resp, "alias", created=0)
    message = out["choices"][0]["message"]
    assert message["reasoning_content"] == "need the weather then answer"
    assert message["thinking_blocks"] == resp["content"][:3]
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 6}


def test_response_without_thinking_has_no_reasoning_fields() -> None:
    resp = {"id": "m", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn"}
    message = messages_response_to_chat(resp, "alias", created=0)["choices"][0]["message"]
    assert "reasoning_content" not in message
    assert "thinking_blocks" not in message


# --- stream ------------------------------------------------------------------------------


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


def _deltas(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stream = MessagesToChatStream("alias", created=1, include_usage=True)
    chunks = [chunk for event in events for chunk in stream.feed(event)] + stream.finish()
    return [c["choices"][0]["delta"] if c["choices"] else {"usage": c["usage"]} for c in chunks]


def test_stream_delivers_each_block_whole_when_it_ends_then_the_tool_call() -> None:
    start = {"id": "msg_s", "usage": {"input_tokens": 4, "output_tokens": 1}}
    events = [
        _event("message_start", message=start),
        _event("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
        _event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "a"}),
        _event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "b"}),
        _event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "s"}),
        _event("content_block_stop", index=0),
        _event("content_block_start", index=1, content_block=REDACTED),
        _event("content_block_stop", index=1),
        _event(
            "content_block_start",
            index=2,
            content_block={"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
        ),
        _event("content_block_stop", index=2),
        _event(
            "message_delta",
            delta={"stop_reason": "tool_use"},
            usage={"output_tokens": 30, "output_tokens_details": {"thinking_tokens": 20}},
        ),
    ]
    deltas = _deltas(events)
    assert deltas[1:5] == [
        {"reasoning_content": "a"},
        {"reasoning_content": "b"},
        {"thinking_blocks": [{"type": "thinking", "thinking": "ab", "signature": "s"}]},
        {"thinking_blocks": [REDACTED]},
    ]
    assert deltas[5]["tool_calls"][0]["id"] == "toolu_9"
    usage = deltas[-1]["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 20}
    assert usage["completion_tokens"] == 30


def test_stream_usage_counts_thinking_tokens() -> None:
    stream = MessagesToChatStream("alias", created=1, include_usage=False)
    stream.feed(_event("message_start", message={"id": "m", "usage": {"input_tokens": 2}}))
    stream.feed(
        _event(
            "message_delta",
            delta={"stop_reason": "end_turn"},
            usage={"output_tokens": 8, "output_tokens_details": {"thinking_tokens": 5}},
        )
    )
    assert stream.usage == Usage(prompt_tokens=2, completion_tokens=8, reasoning_tokens=5)


# --- any-llm -----------------------------------------------------------------------------


def test_anyllm_reasoning_is_also_named_reasoning_content() -> None:
    result = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hi", "reasoning": "hmm"},
                }
            ],
        }
    )
    message = openai_json(result)["choices"][0]["message"]
    assert (message["reasoning"], message["reasoning_content"]) == ("hmm", "hmm")
