"""Reasoning on ``/v1/responses`` bridged to Anthropic, through the real gateway.

The official ``openai`` SDK runs a two-turn tool loop with reasoning on, passing the first
response's output items back as the second turn's input, as a stateless client does. The
fake Anthropic refuses, as the real API does, a tool-result turn whose assistant turn lacks
its signed thinking block, so the second turn only keeps thinking on (and succeeds with it)
when the reasoning item's ``encrypted_content`` went back as that block.
"""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.fakes import content as c
from tests.integration.conftest import Stack

ANTHROPIC = "anthropic:claude-sonnet-4-5"
QUESTION = "weather in Oslo"
THOUGHT = c.thinking_text(QUESTION)
SIGNED = {"type": "thinking", "thinking": THOUGHT, "signature": c.thinking_signature(THOUGHT)}
TOOLS: Any = [
    {
        "type": "function",
        "name": "search",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
REASONING_EVENTS = [
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
]


def _collapsed(types: list[str]) -> list[str]:
    out: list[str] = []
    for kind in types:
        if not (out and out[-1] == kind and kind.endswith(".delta")):
            out.append(kind)
    return out


def _second_turn(output: list[Any], call_id: str) -> Any:
    """The whole conversation again: the question, the first output, the tool's result."""
    return [
        {"role": "user", "content": QUESTION},
        *output,
        {"type": "function_call_output", "call_id": call_id, "output": "cold"},
    ]


def _assert_thinking_went_back(stack: Stack) -> None:
    sent = stack.anthropic_fake.last_request.json_object()
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert [block["type"] for block in sent["messages"][1]["content"]] == ["thinking", "tool_use"]
    assert sent["messages"][1]["content"][0] == SIGNED


def test_tool_loop_sends_the_reasoning_item_back_as_signed_thinking(stack: Stack) -> None:
    with stack.openai_client() as client:
        first = client.responses.create(
            model=ANTHROPIC,
            input=QUESTION,
            tools=TOOLS,
            reasoning={"effort": "low"},
            include=["reasoning.encrypted_content"],
        )
        assert [item.type for item in first.output] == ["reasoning", "function_call"]
        reasoning, call = first.output
        assert reasoning.type == "reasoning" and call.type == "function_call"
        assert [part.text for part in reasoning.summary] == [THOUGHT]
        assert reasoning.encrypted_content
        assert first.usage is not None
        assert first.usage.output_tokens_details.reasoning_tokens == c.reply_tokens(THOUGHT)
        second = client.responses.create(
            model=ANTHROPIC,
            input=_second_turn(first.output, call.call_id),
            tools=TOOLS,
            reasoning={"effort": "low"},
        )
    assert second.output_text == "echo: " + QUESTION
    assert [item.type for item in second.output] == ["reasoning", "message"]
    _assert_thinking_went_back(stack)


def test_streamed_tool_loop_sends_the_reasoning_item_back(stack: Stack) -> None:
    with stack.openai_client() as client:
        with client.responses.stream(
            model=ANTHROPIC, input=QUESTION, tools=TOOLS, reasoning={"effort": "low"}
        ) as stream:
            events = list(stream)
            first = stream.get_final_response()
        types = _collapsed([event.type for event in events])
        assert types == [
            "response.created",
            "response.in_progress",
            *REASONING_EVENTS,
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
        summary = "".join(
            e.delta for e in events if e.type == "response.reasoning_summary_text.delta"
        )
        assert summary == THOUGHT
        done = next(e for e in events if e.type == "response.output_item.done")
        assert done.type == "response.output_item.done" and done.item.type == "reasoning"
        reasoning, call = first.output
        assert reasoning.type == "reasoning" and call.type == "function_call"
        assert reasoning.encrypted_content == done.item.encrypted_content
        with client.responses.stream(
            model=ANTHROPIC,
            input=_second_turn(first.output, call.call_id),
            tools=TOOLS,
            reasoning={"effort": "low"},
        ) as second:
            list(second)
            answer = second.get_final_response()
    assert answer.output_text == "echo: " + QUESTION
    _assert_thinking_went_back(stack)


@pytest.mark.parametrize("encrypted", ["%%%", "gAAAAABpF-not-ours", "W10"])
def test_garbage_encrypted_content_is_a_400_before_any_upstream_call(
    stack: Stack, encrypted: str
) -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted}
    history: Any = [{"role": "user", "content": QUESTION}, reasoning]
    with stack.openai_client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=ANTHROPIC, input=history)
    error = orjson.loads(caught.value.response.content)["error"]
    assert error["type"] == "invalid_request_error"
    assert "input[1].encrypted_content" in error["message"]
    assert stack.anthropic_fake.requests == []
