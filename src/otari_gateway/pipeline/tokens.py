"""Input-token counts made before the upstream answers: budget holds, token rate limits,
the charge for a request cut off early, and ``/v1/messages/count_tokens``.

Text is counted exactly with tiktoken where the model's encoding is known (``tokenizer``);
no tokenizer for Claude or Gemini works offline, so theirs is the common
four-characters-per-token rule over every piece of text the model would read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import anyio

from otari_gateway.pipeline.tokenizer import INLINE_CHARS, Counter

_CHARS_PER_TOKEN = 4
# OpenAI's chat framing as its cookbook counts it: three tokens around each message plus
# its role (one token), and three that prime the reply. Anthropic's counts run the same
# way. Leaving them out made short prompts' holds half their real input.
_PER_MESSAGE_OVERHEAD = 4
_REPLY_PRIMING = 3
# A typical ~1,100 px image as Anthropic and OpenAI bill it (high detail).
_IMAGE_TOKENS = 1600
_IMAGE_TYPES = frozenset({"image", "image_url", "input_image", "document"})
_SKIPPED_KEYS = frozenset({"type", "role", "id", "tool_use_id", "media_type", "cache_control"})


def _pieces(value: Any) -> Iterator[str | None]:
    """Every text the model reads; ``None`` stands for one image."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _pieces(item)
    elif isinstance(value, dict):
        if value.get("type") in _IMAGE_TYPES:
            yield None
            return
        for key, item in value.items():
            if key not in _SKIPPED_KEYS:
                yield from _pieces(item)


# Chat, Messages and Responses input; rerank's query and documents; an image prompt.
_INPUT_FIELDS = (
    "system",
    "messages",
    "tools",
    "input",
    "instructions",
    "query",
    "documents",
    "prompt",
)


async def count_input_tokens(body: Mapping[str, Any], count: Counter | None = None) -> int:
    """Input tokens of a request body (system, messages, tools, inputs, prompts): exact for
    the text when ``count`` is given, four characters a token otherwise."""
    texts: list[str] = []
    images = 0
    for key in _INPUT_FIELDS:
        for piece in _pieces(body.get(key)):
            if piece is None:
                images += 1
            else:
                texts.append(piece)
    chars = sum(len(text) for text in texts)
    if count is None:
        tokens = -(-chars // _CHARS_PER_TOKEN)
    elif chars > INLINE_CHARS:
        tokens = await anyio.to_thread.run_sync(_count_all, texts, count)
    else:
        tokens = _count_all(texts, count)
    messages = body.get("messages")
    overhead = 0
    if isinstance(messages, list) and messages:
        overhead = _PER_MESSAGE_OVERHEAD * len(messages) + _REPLY_PRIMING
    return max(1, tokens + images * _IMAGE_TOKENS + overhead)


def _count_all(texts: list[str], count: Counter) -> int:
    return sum(count(text) for text in texts)


_OUTPUT_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def max_output_tokens(body: Mapping[str, Any], default: int) -> int:
    """The most output tokens the request allows (× ``n`` choices), or ``default``."""
    limit = default
    for name in _OUTPUT_LIMIT_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            limit = value
            break
    choices = body.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1:
        limit *= choices
    return limit
