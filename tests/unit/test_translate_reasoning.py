"""Extended thinking ⇄ reasoning effort, alone and inside the request translators."""

from __future__ import annotations

from typing import Any

import pytest

from otari_gateway.translate.chat_to_messages import chat_request_to_messages
from otari_gateway.translate.messages_to_chat import messages_request_to_chat
from otari_gateway.translate.reasoning import effort_for_thinking, thinking_for_effort

USER = [{"role": "user", "content": "think about it"}]


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 4095}, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, "high"),
        ({"type": "enabled"}, "medium"),
        ({"type": "disabled"}, None),
        (None, None),
        ("enabled", None),
    ],
)
def test_effort_for_thinking(thinking: Any, effort: str | None) -> None:
    assert effort_for_thinking(thinking) == effort


@pytest.mark.parametrize(
    ("effort", "max_tokens", "thinking"),
    [
        ("low", 8000, {"type": "enabled", "budget_tokens": 2048}),
        ("medium", 8000, {"type": "enabled", "budget_tokens": 7999}),
        ("high", 32000, {"type": "enabled", "budget_tokens": 24576}),
        ("high", 1025, {"type": "enabled", "budget_tokens": 1024}),
        ("high", 1024, None),  # no room for the smallest budget below max_tokens
        ("minimal", 8000, None),
        ("none", 8000, None),
        (None, 8000, None),
        (3, 8000, None),
    ],
)
def test_thinking_for_effort(effort: Any, max_tokens: int, thinking: Any) -> None:
    assert thinking_for_effort(effort, max_tokens) == thinking


def test_chat_reasoning_effort_becomes_thinking_without_sampling_knobs() -> None:
    body = {
        "messages": USER,
        "max_tokens": 10_000,
        "reasoning_effort": "medium",
        "temperature": 0.2,
        "top_p": 0.5,
    }
    out = chat_request_to_messages(body, "claude-sonnet-4-5")
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert "temperature" not in out and "top_p" not in out


def test_chat_reasoning_effort_with_a_forced_tool_stays_off() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    body = {
        "messages": USER,
        "reasoning_effort": "high",
        "tools": [tool],
        "tool_choice": "required",
        "temperature": 0.2,
    }
    out = chat_request_to_messages(body, "claude-sonnet-4-5")
    assert "thinking" not in out
    assert out["temperature"] == 0.2


def test_messages_thinking_becomes_reasoning_effort() -> None:
    body = {
        "messages": USER,
        "max_tokens": 20_000,
        "thinking": {"type": "enabled", "budget_tokens": 10_000},
    }
    assert messages_request_to_chat(body, "o3-mini")["reasoning_effort"] == "medium"
    body["thinking"] = {"type": "disabled"}
    assert "reasoning_effort" not in messages_request_to_chat(body, "o3-mini")
