"""Convert token-usage objects between the wire formats and the gateway's ``Usage``.

Readers tolerate missing keys, ``null`` values and nested objects that are absent,
because OpenAI-compatible servers vary a lot in how much of the usage shape they fill in.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from otari_gateway.usage import Usage


def _int(value: Any) -> int:
    # bool is an int subclass; a stray ``true`` must not count as one token.
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float):
        return max(int(value), 0)
    return 0


def _sub(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    nested = usage.get(key)
    return nested if isinstance(nested, Mapping) else {}


def usage_from_chat(usage: Mapping[str, Any] | None) -> Usage:
    """Read an OpenAI Chat Completions (or embeddings) ``usage`` object."""
    if not usage:
        return Usage()
    prompt_details = _sub(usage, "prompt_tokens_details")
    cached = prompt_details.get("cached_tokens")
    if cached is None:
        # DeepSeek reports cache hits under its own top-level name.
        cached = usage.get("prompt_cache_hit_tokens")
    # any-llm (Anthropic models on Bedrock, Vertex...) names cache writes in the details;
    # LiteLLM-style servers keep Anthropic's top-level name. Both are part of prompt_tokens.
    written = prompt_details.get("cache_write_tokens")
    if written is None:
        written = usage.get("cache_creation_input_tokens")
    return Usage(
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        cache_read_tokens=_int(cached),
        cache_write_tokens=_int(written),
        reasoning_tokens=_int(_sub(usage, "completion_tokens_details").get("reasoning_tokens")),
    )


def usage_from_messages(usage: Mapping[str, Any] | None) -> Usage:
    """Read an Anthropic ``usage`` object.

    Anthropic's ``input_tokens`` excludes cached tokens, so they are added back to get the
    all-inclusive ``prompt_tokens`` the gateway uses. ``output_tokens`` includes the
    thinking, which ``output_tokens_details.thinking_tokens`` counts.
    """
    if not usage:
        return Usage()
    uncached = _int(usage.get("input_tokens"))
    cache_read = _int(usage.get("cache_read_input_tokens"))
    cache_write = _int(usage.get("cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=uncached + cache_read + cache_write,
        completion_tokens=_int(usage.get("output_tokens")),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_int(_sub(usage, "output_tokens_details").get("thinking_tokens")),
    )


def usage_from_responses(usage: Mapping[str, Any] | None) -> Usage:
    """Read an OpenAI Responses API ``usage`` object."""
    if not usage:
        return Usage()
    return Usage(
        prompt_tokens=_int(usage.get("input_tokens")),
        completion_tokens=_int(usage.get("output_tokens")),
        cache_read_tokens=_int(_sub(usage, "input_tokens_details").get("cached_tokens")),
        reasoning_tokens=_int(_sub(usage, "output_tokens_details").get("reasoning_tokens")),
    )


def usage_from_rerank(usage: Mapping[str, Any] | None) -> Usage:
    """Read a rerank ``usage``: vLLM and Jina report only ``total_tokens``, others
    ``prompt_tokens`` or ``input_tokens``; all of them count input."""
    if not usage:
        return Usage()
    for name in ("prompt_tokens", "input_tokens", "total_tokens"):
        if usage.get(name) is not None:
            return Usage(prompt_tokens=_int(usage.get(name)))
    return Usage()


def usage_from_images(reply: Mapping[str, Any]) -> Usage:
    """Read an image generation answer: one image per ``data`` item, and the token
    ``usage`` that token-priced image models (gpt-image-1) add."""
    data = reply.get("data")
    usage = reply.get("usage")
    tokens = usage_from_responses(usage if isinstance(usage, Mapping) else None)
    return Usage(
        prompt_tokens=tokens.prompt_tokens,
        completion_tokens=tokens.completion_tokens,
        images=len(data) if isinstance(data, list) else 0,
    )


def _seconds(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = Decimal(str(value))
    except InvalidOperation:
        return None
    return seconds if seconds.is_finite() and seconds >= 0 else None


def usage_from_transcription(reply: Mapping[str, Any]) -> Usage:
    """Read a JSON transcription: ``usage`` of type ``tokens`` (gpt-4o-transcribe) or
    ``duration`` (whisper-1, in ``seconds``), else ``verbose_json``'s top-level ``duration``.

    ``audio_seconds`` is 0 when the answer states no duration.
    """
    usage = reply.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    seconds = _seconds(usage.get("seconds"))
    if seconds is None:
        seconds = _seconds(reply.get("duration"))
    return Usage(
        prompt_tokens=_int(usage.get("input_tokens")),
        completion_tokens=_int(usage.get("output_tokens")),
        audio_seconds=seconds or Decimal(0),
    )


def chat_usage(u: Usage) -> dict[str, Any]:
    """Render ``u`` as an OpenAI Chat Completions ``usage`` object.

    Both details objects are always there, as OpenAI sends them. OpenAI has no field for
    cache writes; they are in ``prompt_tokens`` and named, when there are any, by
    ``prompt_tokens_details.cache_write_tokens`` (any-llm's name for them).
    """
    prompt_details: dict[str, int] = {"cached_tokens": u.cache_read_tokens}
    if u.cache_write_tokens:
        prompt_details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def messages_usage(u: Usage) -> dict[str, Any]:
    """Render ``u`` as an Anthropic ``usage`` object (``input_tokens`` excludes cache).

    Reasoning tokens, part of ``output_tokens``, are named in ``output_tokens_details``
    when there are any, as Anthropic does for thinking.
    """
    out: dict[str, Any] = {
        "input_tokens": max(u.prompt_tokens - u.cache_read_tokens - u.cache_write_tokens, 0),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
    }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def responses_usage(u: Usage) -> dict[str, Any]:
    """Render ``u`` as an OpenAI Responses ``usage`` object (``input_tokens`` includes cache)."""
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }
