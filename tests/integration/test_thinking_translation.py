"""Reasoning across translation through the real gateway, with the official SDKs.

* OpenAI SDK on Anthropic with thinking: ``reasoning_content`` and signed ``thinking_blocks``
  (whole blocks when streamed), and a tool loop that sends them back: the fake Anthropic
  refuses, as the real API does, a tool-result turn whose assistant turn lacks its thinking
  block, and any signature it did not issue.
* Anthropic SDK on an OpenAI-compatible reasoning model: thinking blocks out, streamed and
  not; thinking in the client's history is not sent upstream.
* Reasoning tokens in every surface's usage and in the usage row.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from typing import Any

import anthropic
import orjson
import pytest

from tests.fakes import content as c
from tests.integration.conftest import MASTER_KEY, Stack, create_key

ANTHROPIC_MODEL = "anthropic:claude-sonnet-4-5"
REASONER = "openai:deepseek-reasoner"
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
QUESTION = "weather in Oslo"
THOUGHT = c.thinking_text(QUESTION)
SIGNED = {"type": "thinking", "thinking": THOUGHT, "signature": c.thinking_signature(THOUGHT)}
THOUGHT_TOKENS = c.reply_tokens(THOUGHT)


def _anthropic_sent(stack: Stack) -> dict[str, Any]:
    body = stack.anthropic_fake.last_request.json
    assert isinstance(body, dict)
    return body


def _follow_up(call_id: str, arguments: str, assistant_extra: dict[str, Any]) -> list[Any]:
    """The conversation after the model called ``search``: its turn, then the result."""
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "search", "arguments": arguments},
            }
        ],
        **assistant_extra,
    }
    return [
        {"role": "user", "content": QUESTION},
        assistant,
        {"role": "tool", "tool_call_id": call_id, "content": "cold"},
    ]


# --------------------------------------------------------------------------- OpenAI → Anthropic


def test_chat_on_anthropic_tool_loop_sends_signed_thinking_back_first(stack: Stack) -> None:
    with stack.openai_client() as client:
        first = client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            tools=TOOLS,
            reasoning_effort="low",
        )
        message = first.choices[0].message
        extra = message.model_extra or {}
        assert extra["reasoning_content"] == THOUGHT
        assert extra["thinking_blocks"] == [SIGNED]
        assert first.usage is not None and first.usage.completion_tokens_details is not None
        assert first.usage.completion_tokens_details.reasoning_tokens == THOUGHT_TOKENS
        assert first.usage.completion_tokens == c.TOOL_CALL_OUTPUT_TOKENS + THOUGHT_TOKENS
        assert message.tool_calls is not None
        call = message.tool_calls[0]
        assert call.type == "function"
        history = _follow_up(
            call.id, call.function.arguments, {"thinking_blocks": extra["thinking_blocks"]}
        )
        second = client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=history, tools=TOOLS, reasoning_effort="low"
        )
    assert second.choices[0].message.content == "echo: " + QUESTION
    sent = _anthropic_sent(stack)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert [block["type"] for block in sent["messages"][1]["content"]] == ["thinking", "tool_use"]
    assert sent["messages"][1]["content"][0] == SIGNED


def test_chat_on_anthropic_tool_loop_without_thinking_blocks_still_answers(stack: Stack) -> None:
    with stack.openai_client() as client:
        first = client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            tools=TOOLS,
            reasoning_effort="low",
        )
        calls = first.choices[0].message.tool_calls
        assert calls is not None and calls[0].type == "function"
        # A plain OpenAI client keeps only reasoning_content, which carries no signature.
        history = _follow_up(
            calls[0].id, calls[0].function.arguments, {"reasoning_content": THOUGHT}
        )
        second = client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=history, tools=TOOLS, reasoning_effort="low"
        )
    assert second.choices[0].message.content == "echo: " + QUESTION
    assert "thinking" not in _anthropic_sent(stack)


def test_fake_anthropic_refuses_what_the_gateway_must_not_send(stack: Stack) -> None:
    """The fake's refusals, so the tests above prove the blocks really went back."""
    tool_use = {"type": "tool_use", "id": "toolu_x", "name": "search", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "toolu_x", "content": "cold"}
    forged = {**SIGNED, "thinking": "something else"}
    history: Any
    with anthropic.Anthropic(
        base_url=stack.anthropic_fake.base_url,
        api_key=stack.anthropic_fake.api_key,
        max_retries=0,
    ) as client:
        for assistant in ([tool_use], [forged, tool_use]):
            history = [
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": assistant},
                {"role": "user", "content": [result]},
            ]
            with pytest.raises(anthropic.BadRequestError):
                client.messages.create(
                    model="claude-sonnet-4-5",
                    max_tokens=4096,
                    thinking={"type": "enabled", "budget_tokens": 1024},
                    messages=history,
                )


def test_chat_on_anthropic_stream_delivers_reasoning_and_whole_signed_blocks(
    stack: Stack,
) -> None:
    with stack.openai_client() as client:
        with client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            tools=TOOLS,
            reasoning_effort="low",
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            chunks = list(stream)
        deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
        extras = [delta.model_extra or {} for delta in deltas]
        reasoning = "".join(extra.get("reasoning_content") or "" for extra in extras)
        blocks = [block for extra in extras for block in extra.get("thinking_blocks") or []]
        assert reasoning == THOUGHT
        assert blocks == [SIGNED]
        # The block is complete before the tool call starts, as on Anthropic's stream.
        block_at = next(i for i, extra in enumerate(extras) if extra.get("thinking_blocks"))
        call_at = next(i for i, delta in enumerate(deltas) if delta.tool_calls)
        assert block_at < call_at
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == THOUGHT_TOKENS
        calls = [call for delta in deltas for call in delta.tool_calls or []]
        arguments = "".join(
            (call.function.arguments or "") if call.function else "" for call in calls
        )
        call_id = calls[0].id
        assert call_id is not None
        with client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=_follow_up(call_id, arguments, {"thinking_blocks": blocks}),
            tools=TOOLS,
            reasoning_effort="low",
            stream=True,
        ) as second:
            text = "".join(ch.choices[0].delta.content or "" for ch in second if ch.choices)
    assert text == "echo: " + QUESTION
    assert _anthropic_sent(stack)["messages"][1]["content"][0] == SIGNED


# --------------------------------------------------------------------------- Anthropic → OpenAI


def test_messages_on_reasoning_model_gets_thinking_blocks(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model=REASONER,
            max_tokens=200,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": QUESTION}],
        )
        assert [block.type for block in message.content] == ["thinking", "text"]
        assert message.content[0].type == "thinking"
        assert message.content[0].thinking == THOUGHT
        details = message.usage.output_tokens_details
        assert details is not None and details.thinking_tokens == THOUGHT_TOKENS
        history: Any = [
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": [block.model_dump() for block in message.content]},
            {"role": "user", "content": "and tomorrow?"},
        ]
        client.messages.create(model=REASONER, max_tokens=200, messages=history)
    sent = stack.openai_fake.last_request.json
    assert isinstance(sent, dict)
    assert sent["messages"][1] == {"role": "assistant", "content": "echo: " + QUESTION}


def test_messages_on_reasoning_model_stream_has_a_thinking_block_first(stack: Stack) -> None:
    with (
        stack.anthropic_client() as client,
        client.messages.stream(
            model=REASONER,
            max_tokens=200,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": QUESTION}],
        ) as stream,
    ):
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].type == "thinking" and final.content[0].thinking == THOUGHT
    assert kinds.index("thinking") < kinds.index("text")
    details = final.usage.output_tokens_details
    assert details is not None and details.thinking_tokens == THOUGHT_TOKENS


# --------------------------------------------------------------------------- usage everywhere


def test_responses_report_reasoning_tokens_on_both_bridges(stack: Stack) -> None:
    with stack.openai_client() as client:
        for model in ("chatonly:local-reasoner", ANTHROPIC_MODEL):
            response = client.responses.create(
                model=model, input=QUESTION, reasoning={"effort": "low"}
            )
            assert [item.type for item in response.output] == ["reasoning", "message"]
            assert response.usage is not None
            assert response.usage.output_tokens_details.reasoning_tokens == THOUGHT_TOKENS


def _rows(stack: Stack, user_id: str, count: int) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"user_id": user_id})
    request = urllib.request.Request(
        f"{stack.base_url}/v1/usage?{query}", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    deadline = time.monotonic() + 2.0
    while True:
        with urllib.request.urlopen(request, timeout=10) as response:
            rows: list[dict[str, Any]] = orjson.loads(response.read())
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_usage_rows_hold_reasoning_tokens_streamed_or_not(stack: Stack) -> None:
    key = str(create_key(stack.base_url, user_id="thinking-rows")["key"])
    with stack.openai_client(api_key=key) as client:
        client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": QUESTION}],
            reasoning_effort="low",
        )
        with client.chat.completions.create(
            model=REASONER, messages=[{"role": "user", "content": QUESTION}], stream=True
        ) as stream:
            list(stream)
    rows = _rows(stack, "thinking-rows", 2)
    assert [(row["provider"], row["reasoning_tokens"]) for row in rows] == [
        ("openai", THOUGHT_TOKENS),
        ("anthropic", THOUGHT_TOKENS),
    ]
    reply_tokens = c.reply_tokens("echo: " + QUESTION)
    assert all(row["completion_tokens"] == reply_tokens + THOUGHT_TOKENS for row in rows)
