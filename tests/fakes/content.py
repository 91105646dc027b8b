"""Deterministic content rules shared by the fake OpenAI and Anthropic upstreams.

Every reply a fake produces is a pure function of the request, so tests can assert
that a request really went through the gateway:

* reply text is ``"echo: " + <text of the last user message>`` (text parts joined
  with one space);
* a tool call (when the request has tools and the last message is not a tool
  result) targets the first tool with arguments ``{"query": <last user text>}``;
* token counts are whitespace-separated word counts (see ``count_words``);
  a tool call always costs ``TOOL_CALL_OUTPUT_TOKENS`` output tokens;
* models whose name starts with ``MISSING_MODEL_PREFIX`` do not exist (404);
* reasoning (Anthropic with thinking on, OpenAI models whose name contains
  ``REASONING_MODEL_MARK``) is ``"thinking about: " + <last user text>``, and its words
  are output tokens too;
* embeddings are unit-norm vectors derived from the SHA-256 of the input.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Iterable
from typing import Any

TOOL_CALL_OUTPUT_TOKENS = 5
CACHE_READ_TOKENS = 3
EMBEDDING_DIMENSIONS = 8
MISSING_MODEL_PREFIX = "missing-"
ECHO_PREFIX = "echo: "
THINKING_PREFIX = "thinking about: "
REASONING_MODEL_MARK = "reasoner"

TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


def is_missing_model(model: str) -> bool:
    """True when the fakes must answer 404 for this model name."""
    return model.startswith(MISSING_MODEL_PREFIX)


def text_of(content: Any) -> str:
    """Text of a message ``content``: a string, or text parts joined with a space."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in TEXT_PART_TYPES
            and isinstance(part.get("text"), str)
        ]
        return " ".join(texts)
    return ""


def count_words(texts: Iterable[str]) -> int:
    """Number of whitespace-separated words across all ``texts``."""
    return sum(len(text.split()) for text in texts)


def echo_reply(user_text: str) -> str:
    """The assistant text the fakes answer with."""
    return ECHO_PREFIX + user_text


def reply_tokens(reply: str) -> int:
    """Output tokens charged for a text reply."""
    return len(reply.split())


def stream_pieces(text: str) -> list[str]:
    """Split ``text`` into word deltas that concatenate back to ``text`` exactly.

    ``"echo: hi there"`` -> ``["echo:", " hi", " there"]``.
    """
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


def split_fragments(text: str, parts: int = 3) -> list[str]:
    """Split ``text`` into up to ``parts`` non-empty consecutive fragments."""
    if not text:
        return []
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def thinking_text(user_text: str) -> str:
    """The reasoning a fake shows when thinking is on (Anthropic) or for a reasoning model."""
    return THINKING_PREFIX + user_text


def thinking_signature(thinking: str) -> str:
    """The signature the fake Anthropic issues for a thinking block's text, and checks."""
    return "sig_" + hashlib.sha256(thinking.encode()).hexdigest()[:24]


def tool_arguments(user_text: str) -> dict[str, str]:
    """The arguments of the single tool call a fake makes."""
    return {"query": user_text}


def rerank_scores(query: str, texts: list[str]) -> list[tuple[float, int]]:
    """(score, index) best first: a document's score is the share of the query's words it has."""
    words = set(query.lower().split())
    scored = []
    for index, text in enumerate(texts):
        hits = len(words & set(text.lower().split()))
        scored.append((round(hits / max(len(words), 1), 4), index))
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return scored


def rerank_tokens(query: str, texts: list[str]) -> int:
    """What a reranker reports reading: the query once per document, and every document."""
    return count_words([query]) * len(texts) + count_words(texts)


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit-norm vector for ``text``."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend((byte - 127.5) / 127.5 for byte in digest)
        counter += 1
    vector = raw[:dimensions]
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [round(value / norm, 6) for value in vector]


def embedding_base64(vector: list[float]) -> str:
    """``encoding_format="base64"``: little-endian float32 array, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
