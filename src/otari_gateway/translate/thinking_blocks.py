"""Anthropic thinking blocks carried through OpenAI-shaped chat messages.

An OpenAI Chat client on an Anthropic upstream gets the reasoning twice: as the text
``reasoning_content`` (what most OpenAI-compatible servers send) and as the signed
``thinking_blocks`` list (``{type: thinking, thinking, signature}`` or
``{type: redacted_thinking, data}``, the shape LiteLLM-style clients keep and send back).
Anthropic checks the signatures, and with thinking on it refuses a tool-result turn whose
assistant turn does not start with its thinking blocks, so a history that carries them is
turned back into blocks placed first, exactly as issued.

Streaming: ``reasoning_content`` deltas as the thinking arrives, then, when a block ends,
one delta whose ``thinking_blocks`` holds that block whole (text and signature), so a client
builds the list by appending every delta's ``thinking_blocks`` in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

THINKING_TYPES = ("thinking", "redacted_thinking")


def replay_blocks(raw: Any) -> list[dict[str, Any]]:
    """Anthropic blocks for an assistant message's ``thinking_blocks``, in their order.

    Blocks without a signature (or redacted ones without data) are left out: Anthropic
    accepts only blocks it signed, and an unsigned one can only have come from elsewhere.
    """
    if not isinstance(raw, list):
        return []
    blocks: list[dict[str, Any]] = []
    for block in filter(is_signed, raw):
        if block["type"] == "thinking":
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": block.get("thinking") or "",
                    "signature": block["signature"],
                }
            )
        else:
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
    return blocks


def is_signed(block: Any) -> bool:
    """A thinking block with its signature, or a redacted one with its data."""
    if not isinstance(block, Mapping):
        return False
    if block.get("type") == "thinking":
        return nonempty_text(block.get("signature"))
    return block.get("type") == "redacted_thinking" and nonempty_text(block.get("data"))


def nonempty_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def thinking_setting(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """An Anthropic-shaped ``thinking`` the client sent on the chat body, if any.

    LiteLLM-style clients send ``thinking: {type: enabled, budget_tokens}`` next to (or
    instead of) ``reasoning_effort``; it is Anthropic's own knob, so it is kept as sent.
    """
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and isinstance(thinking.get("type"), str):
        return dict(thinking)
    return None


def missing_replayed_thinking(turns: list[dict[str, Any]]) -> bool:
    """True when Anthropic would refuse these turns with thinking on.

    Its rule: when the conversation ends in a tool-result turn, the assistant turn before it
    (the one holding the matching ``tool_use`` blocks) must start with a thinking block.
    """
    if len(turns) < 2 or turns[-1]["role"] != "user":
        return False
    if not any(block.get("type") == "tool_result" for block in turns[-1]["content"]):
        return False
    assistant = turns[-2]
    return assistant["role"] == "assistant" and (
        not assistant["content"] or assistant["content"][0].get("type") not in THINKING_TYPES
    )


def reasoning_fields(content: Any) -> dict[str, Any]:
    """``reasoning_content`` and ``thinking_blocks`` for an Anthropic message's content."""
    blocks = [
        block
        for block in content or []
        if isinstance(block, Mapping) and block.get("type") in THINKING_TYPES
    ]
    if not blocks:
        return {}
    kept = [_client_block(block) for block in blocks]
    texts = [block["thinking"] for block in kept if block["type"] == "thinking"]
    fields: dict[str, Any] = {"thinking_blocks": kept}
    if texts:
        fields["reasoning_content"] = "".join(texts)
    return fields


def _client_block(block: Mapping[str, Any]) -> dict[str, Any]:
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    return {
        "type": "thinking",
        "thinking": block.get("thinking") or "",
        "signature": block.get("signature") or "",
    }


class ThinkingStream:
    """Collects streamed thinking blocks by Anthropic block index until they end."""

    def __init__(self) -> None:
        self._open: dict[int, dict[str, Any]] = {}
        self._texts: dict[int, list[str]] = {}

    def start(self, index: int, block: Mapping[str, Any]) -> None:
        self._open[index] = _client_block(block)
        self._texts[index] = [block.get("thinking") or ""]

    def text(self, index: int, piece: str) -> None:
        if index in self._texts:
            self._texts[index].append(piece)

    def signature(self, index: int, signature: str) -> None:
        if index in self._open and self._open[index]["type"] == "thinking":
            self._open[index]["signature"] = signature

    def stop(self, index: int) -> dict[str, Any] | None:
        """The whole block once it ends; None for an index that is not a thinking block."""
        block = self._open.pop(index, None)
        texts = self._texts.pop(index, [])
        if block is not None and block["type"] == "thinking":
            block["thinking"] = "".join(texts)
        return block
