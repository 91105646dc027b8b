"""Reasoning items on the Responses bridge: the upstream's thinking out, and back in.

OpenAI's Responses API returns a model's reasoning as an output item placed before the
message and function calls it led to: ``{type: reasoning, id, summary: [{type:
summary_text, text}], encrypted_content}``. A client that keeps its own history passes the
item back in ``input`` on the next turn. On the bridge the thinking arrives as Chat
``reasoning_content`` (the text) and, from Anthropic, signed ``thinking_blocks``
(``translate/thinking_blocks.py``). The text becomes the summary, one part per thinking
block; the signed blocks travel opaquely in ``encrypted_content`` (base64url, unpadded, of
their compact JSON), because Anthropic refuses, with thinking on, a tool-result turn whose
assistant turn lacks them. Coming back, an item's ``encrypted_content`` turns into the
``thinking_blocks`` of the assistant message it precedes.

``encrypted_content`` is returned whether or not ``include`` names
``reasoning.encrypted_content``: the bridge stores no responses, so a stateless client
that had not asked could never continue a tool loop with thinking on.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from otari_gateway.translate.errors import TranslationError
from otari_gateway.translate.thinking_blocks import is_signed, nonempty_text, replay_blocks

_INVALID = (
    "is not reasoning issued by this gateway for this provider; send back the reasoning "
    "items exactly as they were returned, or leave them out"
)


def encode_thinking(blocks: list[dict[str, Any]]) -> str:
    """The ``encrypted_content`` carrying signed thinking blocks, exactly as given."""
    return base64.urlsafe_b64encode(orjson.dumps(blocks)).rstrip(b"=").decode("ascii")


def decode_thinking(value: Any, where: str) -> list[dict[str, Any]]:
    """The thinking blocks in an ``encrypted_content``; ``TranslationError`` for anything
    ``encode_thinking`` could not have produced."""
    if not isinstance(value, str) or not value:
        raise TranslationError(f"{where}.encrypted_content {_INVALID}")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        blocks = orjson.loads(raw)
    except ValueError:  # binascii.Error and orjson's decode error are both ValueErrors
        raise TranslationError(f"{where}.encrypted_content {_INVALID}") from None
    if not isinstance(blocks, list) or not blocks or not all(map(_well_formed, blocks)):
        raise TranslationError(f"{where}.encrypted_content {_INVALID}")
    return replay_blocks(blocks)


def _well_formed(block: Any) -> bool:
    return is_signed(block) and (
        block["type"] != "thinking" or isinstance(block.get("thinking"), str)
    )


def input_thinking(item: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """The blocks an input reasoning item carries; none when it has no ``encrypted_content``
    (its summary alone is unsigned text, which Anthropic would refuse)."""
    encrypted = item.get("encrypted_content")
    return [] if encrypted is None else decode_thinking(encrypted, where)


def reasoning_item(
    item_id: str,
    summary: list[str],
    blocks: list[dict[str, Any]],
    status: str = "completed",
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "reasoning",
        "status": status,
        "summary": [summary_part(text) for text in summary],
        "encrypted_content": encode_thinking(blocks) if blocks else None,
    }


def summary_part(text: str) -> dict[str, str]:
    return {"type": "summary_text", "text": text}


def message_reasoning(message: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The summary texts and signed blocks of a Chat assistant message's reasoning.

    One summary part per thinking block that has text, as the stream closes a part when
    its block ends; a bare ``reasoning_content`` (or ``reasoning``) is one part.
    """
    raw_blocks = message.get("thinking_blocks")
    listed: list[Any] = raw_blocks if isinstance(raw_blocks, list) else []
    texts = [
        block["thinking"]
        for block in listed
        if isinstance(block, Mapping) and nonempty_text(block.get("thinking"))
    ]
    if not texts:
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        texts = [reasoning] if nonempty_text(reasoning) else []
    return texts, replay_blocks(raw_blocks)
