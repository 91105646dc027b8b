"""Usage readers and writers for the three wire formats."""

from __future__ import annotations

from typing import Any

import pytest

from otari_gateway.translate.usage import (
    chat_usage,
    messages_usage,
    responses_usage,
    usage_from_chat,
    usage_from_messages,
    usage_from_responses,
)
from otari_gateway.usage import Usage


def test_usage_from_chat_reads_cached_and_reasoning_tokens() -> None:
    raw = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 60, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 25},
    }
    assert usage_from_chat(raw) == Usage(
        prompt_tokens=100, completion_tokens=40, cache_read_tokens=60, reasoning_tokens=25
    )


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        {"prompt_tokens": None, "completion_tokens": None},
        {"prompt_tokens_details": None, "completion_tokens_details": None},
        {"prompt_tokens": True, "completion_tokens": "7"},
    ],
)
def test_usage_from_chat_tolerates_missing_and_null(raw: Any) -> None:
    assert usage_from_chat(raw) == Usage()


def test_usage_from_chat_reads_embeddings_usage() -> None:
    assert usage_from_chat({"prompt_tokens": 8, "total_tokens": 8}) == Usage(prompt_tokens=8)


def test_usage_from_chat_falls_back_to_deepseek_cache_hits() -> None:
    raw = {"prompt_tokens": 50, "completion_tokens": 5, "prompt_cache_hit_tokens": 30}
    assert usage_from_chat(raw).cache_read_tokens == 30


def test_usage_from_messages_adds_cached_tokens_to_prompt() -> None:
    raw = {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 50,
    }
    u = usage_from_messages(raw)
    assert u == Usage(
        prompt_tokens=360, completion_tokens=20, cache_read_tokens=300, cache_write_tokens=50
    )
    assert u.total_tokens == 380


def test_usage_from_messages_tolerates_null_cache_fields() -> None:
    raw = {
        "input_tokens": 10,
        "output_tokens": 2,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
    }
    assert usage_from_messages(raw) == Usage(prompt_tokens=10, completion_tokens=2)
    assert usage_from_messages(None) == Usage()


def test_usage_from_responses() -> None:
    raw = {
        "input_tokens": 90,
        "input_tokens_details": {"cached_tokens": 64},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 12},
        "total_tokens": 120,
    }
    assert usage_from_responses(raw) == Usage(
        prompt_tokens=90, completion_tokens=30, cache_read_tokens=64, reasoning_tokens=12
    )
    assert usage_from_responses({"input_tokens_details": None}) == Usage()


def test_chat_usage_always_has_both_details() -> None:
    assert chat_usage(Usage(prompt_tokens=3, completion_tokens=4)) == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_chat_usage_includes_nonzero_details() -> None:
    u = Usage(prompt_tokens=100, completion_tokens=40, cache_read_tokens=60, reasoning_tokens=25)
    assert chat_usage(u) == {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 60},
        "completion_tokens_details": {"reasoning_tokens": 25},
    }


def test_messages_usage_subtracts_cache_from_input() -> None:
    u = Usage(prompt_tokens=360, completion_tokens=20, cache_read_tokens=300, cache_write_tokens=50)
    assert messages_usage(u) == {
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 50,
    }


def test_messages_usage_round_trips_through_reader() -> None:
    u = Usage(prompt_tokens=360, completion_tokens=20, cache_read_tokens=300, cache_write_tokens=50)
    assert usage_from_messages(messages_usage(u)) == u


def test_chat_usage_round_trips_through_reader() -> None:
    u = Usage(prompt_tokens=100, completion_tokens=40, cache_read_tokens=60, reasoning_tokens=25)
    assert usage_from_chat(chat_usage(u)) == u


def test_messages_usage_never_goes_negative() -> None:
    assert messages_usage(Usage(prompt_tokens=5, cache_read_tokens=10))["input_tokens"] == 0


def test_usage_from_chat_reads_cache_writes_under_either_name() -> None:
    anyllm = {"prompt_tokens": 50, "prompt_tokens_details": {"cache_write_tokens": 20}}
    litellm = {"prompt_tokens": 50, "cache_creation_input_tokens": 20}
    for raw in (anyllm, litellm):
        assert usage_from_chat(raw) == Usage(prompt_tokens=50, cache_write_tokens=20)


def test_usage_from_messages_reads_thinking_tokens() -> None:
    raw = {"input_tokens": 5, "output_tokens": 40, "output_tokens_details": {"thinking_tokens": 30}}
    assert usage_from_messages(raw) == Usage(
        prompt_tokens=5, completion_tokens=40, reasoning_tokens=30
    )


def test_reasoning_and_cache_counts_survive_every_surface() -> None:
    """One upstream's counts read the same back from each client surface's rendering."""
    u = Usage(
        prompt_tokens=100,
        completion_tokens=40,
        cache_read_tokens=60,
        cache_write_tokens=10,
        reasoning_tokens=25,
    )
    assert usage_from_chat(chat_usage(u)) == u
    assert usage_from_messages(messages_usage(u)) == u
    assert usage_from_responses(responses_usage(u)) == Usage(
        prompt_tokens=100, completion_tokens=40, cache_read_tokens=60, reasoning_tokens=25
    )
    assert responses_usage(u)["input_tokens_details"]["cache_write_tokens"] == 10


def test_messages_usage_names_reasoning_only_when_there_is_some() -> None:
    assert "output_tokens_details" not in messages_usage(Usage(completion_tokens=4))
    assert messages_usage(Usage(completion_tokens=9, reasoning_tokens=7))[
        "output_tokens_details"
    ] == {"thinking_tokens": 7}
