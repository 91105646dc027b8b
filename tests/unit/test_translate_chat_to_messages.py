"""OpenAI Chat client over an Anthropic upstream: request, response and stream conversion."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from otari_gateway.translate.chat_stream import MessagesToChatStream
from otari_gateway.translate.chat_to_messages import (
    chat_request_to_messages,
    messages_response_to_chat,
)
from otari_gateway.translate.errors import TranslationError, UpstreamStreamError
from otari_gateway.usage import Usage

MODEL = "claude-sonnet-4-5"


def _req(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return chat_request_to_messages({"model": "alias", "messages": messages, **extra}, MODEL)


# --- request ---------------------------------------------------------------------------


def test_minimal_request() -> None:
    out = _req([{"role": "user", "content": "hi"}])
    assert out == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 4096,
    }


def test_single_system_prompt_becomes_a_string() -> None:
    out = _req([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert out["system"] == "be brief"
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_several_system_and_developer_prompts_become_blocks() -> None:
    out = _req(
        [
            {"role": "system", "content": "one"},
            {"role": "developer", "content": [{"type": "text", "text": "two"}]},
            {"role": "user", "content": "hi"},
        ]
    )
    assert out["system"] == [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]


def test_images_data_url_and_http_url() -> None:
    out = _req(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                ],
            }
        ]
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
    ]


@pytest.mark.parametrize("url", ["ftp://x.test/a.png", "data:image/png,rawbytes", ""])
def test_unsupported_image_urls_raise(url: str) -> None:
    with pytest.raises(TranslationError):
        _req([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])


def _tool_turns() -> list[dict[str, Any]]:
    args = orjson.dumps({"city": "Paris"}).decode()
    return [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "weather", "arguments": args},
                },
                {
                    "id": "toolu_01XYZ",
                    "type": "function",
                    "function": {"name": "time", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"},
        {
            "role": "tool",
            "tool_call_id": "toolu_01XYZ",
            "content": [{"type": "text", "text": "noon"}],
        },
        {"role": "user", "content": "thanks"},
    ]


def test_tool_calls_and_results_keep_ids_and_merge_into_one_user_turn() -> None:
    out = _req(_tool_turns())
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_abc", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01XYZ", "name": "time", "input": {}},
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_abc", "content": "sunny"},
        {
            "type": "tool_result",
            "tool_use_id": "toolu_01XYZ",
            "content": [{"type": "text", "text": "noon"}],
        },
        {"type": "text", "text": "thanks"},
    ]


def test_consecutive_same_role_messages_merge() -> None:
    out = _req(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "d"},
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
        },
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_arguments_raise(arguments: str) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(TranslationError, match="arguments"):
        _req([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}])


def test_only_system_messages_raise() -> None:
    with pytest.raises(TranslationError, match="non-empty"):
        _req([{"role": "system", "content": "x"}, {"role": "user", "content": ""}])


def test_n_greater_than_one_raises() -> None:
    with pytest.raises(TranslationError, match="n > 1"):
        _req([{"role": "user", "content": "x"}], n=2)


def test_sampling_fields_and_dropped_fields() -> None:
    out = _req(
        [{"role": "user", "content": "x"}],
        max_completion_tokens=50,
        max_tokens=99,
        temperature=0.2,
        top_p=0.9,
        stop="END",
        stream=True,
        stream_options={"include_usage": True},
        user="u-42",
        n=1,
        seed=7,
        logprobs=True,
        presence_penalty=0.5,
        reasoning_effort="high",
    )
    assert out == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": True,
        "metadata": {"user_id": "u-42"},
    }


def test_max_tokens_and_stop_list() -> None:
    out = chat_request_to_messages(
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 12, "stop": ["a", "b"]},
        MODEL,
        default_max_tokens=1,
    )
    assert out["max_tokens"] == 12
    assert out["stop_sequences"] == ["a", "b"]
    default = chat_request_to_messages(
        {"messages": [{"role": "user", "content": "x"}]}, MODEL, default_max_tokens=77
    )
    assert default["max_tokens"] == 77


_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Get weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


def test_tools_convert_to_input_schema() -> None:
    out = _req([{"role": "user", "content": "x"}], tools=[_TOOL])
    assert out["tools"] == [
        {
            "name": "weather",
            "description": "Get weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert "tool_choice" not in out


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            None,
            {"type": "tool", "name": "weather"},
        ),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("required", True, {"type": "any"}),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    extra: dict[str, Any] = {"tools": [_TOOL]}
    if choice is not None:
        extra["tool_choice"] = choice
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    assert _req([{"role": "user", "content": "x"}], **extra)["tool_choice"] == expected


# --- response --------------------------------------------------------------------------


def test_response_with_thinking_text_and_tool_use() -> None:
    resp = {
        "id": "msg_01ABC",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "thinking", "thinking": "let me see", "signature": "sig"},
            {"type": "text", "text": "Checking "},
            {"type": "text", "text": "now."},
            {"type": "tool_use", "id": "toolu_01X", "name": "weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
        },
    }
    out = messages_response_to_chat(resp, "my-alias", created=123)
    assert out == {
        "id": "msg_01ABC",
        "object": "chat.completion",
        "created": 123,
        # The model the upstream reported, as a same-format client would see it.
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking now.",
                    "reasoning_content": "let me see",
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "let me see", "signature": "sig"}
                    ],
                    "tool_calls": [
                        {
                            "id": "toolu_01X",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 115,
            "completion_tokens": 20,
            "total_tokens": 135,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def test_response_with_only_tool_use_has_null_content() -> None:
    resp = {
        "id": "msg_1",
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        "stop_reason": "tool_use",
    }
    message = messages_response_to_chat(resp, "m", created=0)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == "{}"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "length"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_finish_reason_mapping(stop_reason: str | None, finish_reason: str) -> None:
    resp = {"id": "msg_1", "content": [], "stop_reason": stop_reason}
    out = messages_response_to_chat(resp, "m", created=0)
    assert out["choices"][0]["finish_reason"] == finish_reason


# --- streaming -------------------------------------------------------------------------


def _start(**usage: int) -> dict[str, Any]:
    message = {
        "id": "msg_stream",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": MODEL,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 1, **usage},
    }
    return {"type": "message_start", "message": message}


def _block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def _message_delta(stop_reason: str, **usage: int) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


def _run(events: list[dict[str, Any]], *, include_usage: bool = False) -> list[dict[str, Any]]:
    stream = MessagesToChatStream("alias", created=99, include_usage=include_usage)
    chunks = [chunk for event in events for chunk in stream.feed(event)]
    return chunks + stream.finish()


def _summary(chunks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]


TEXT_EVENTS: list[dict[str, Any]] = [
    _start(),
    _block_start(0, {"type": "text", "text": ""}),
    {"type": "ping"},
    _block_delta(0, {"type": "text_delta", "text": "Hello"}),
    _block_delta(0, {"type": "text_delta", "text": " world"}),
    _stop(0),
    _message_delta("end_turn", output_tokens=12),
    {"type": "message_stop"},
]


def test_stream_text_answer() -> None:
    chunks = _run(TEXT_EVENTS)
    assert _summary(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hello"}, None),
        ({"content": " world"}, None),
        ({}, "stop"),
    ]
    for chunk in chunks:
        assert chunk["id"] == "msg_stream"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == 99
        assert chunk["model"] == "claude-sonnet-4-5"
        assert "usage" not in chunk


def test_stream_include_usage_adds_final_usage_chunk() -> None:
    events = [_start(cache_read_input_tokens=100), *TEXT_EVENTS[1:]]
    chunks = _run(events, include_usage=True)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1] == {
        "id": "msg_stream",
        "object": "chat.completion.chunk",
        "created": 99,
        "model": "claude-sonnet-4-5",
        "choices": [],
        "usage": {
            "prompt_tokens": 125,
            "completion_tokens": 12,
            "total_tokens": 137,
            "prompt_tokens_details": {"cached_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def test_stream_tool_call_answer() -> None:
    events = [
        _start(),
        _block_start(0, {"type": "text", "text": ""}),
        _block_delta(0, {"type": "text_delta", "text": "Let me check."}),
        _stop(0),
        _block_start(1, {"type": "tool_use", "id": "toolu_A", "name": "weather", "input": {}}),
        _block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
        _block_delta(1, {"type": "input_json_delta", "partial_json": '{"city": '}),
        _block_delta(1, {"type": "input_json_delta", "partial_json": '"Paris"}'}),
        _stop(1),
        _block_start(2, {"type": "tool_use", "id": "toolu_B", "name": "time", "input": {}}),
        _block_delta(2, {"type": "input_json_delta", "partial_json": "{}"}),
        _stop(2),
        _message_delta("tool_use", output_tokens=40),
        {"type": "message_stop"},
    ]
    chunks = _run(events)
    assert _summary(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Let me check."}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_A",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "toolu_B",
                        "type": "function",
                        "function": {"name": "time", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}, None),
        ({}, "tool_calls"),
    ]
    arguments: dict[int, str] = {}
    for delta, _ in _summary(chunks):
        for call in delta.get("tool_calls", []):
            index = call["index"]
            arguments[index] = arguments.get(index, "") + call["function"]["arguments"]
    assert orjson.loads(arguments[0]) == {"city": "Paris"}
    assert orjson.loads(arguments[1]) == {}


def test_stream_of_tool_calls_only_has_null_content() -> None:
    events = [
        _start(),
        _block_start(0, {"type": "tool_use", "id": "toolu_A", "name": "weather", "input": {}}),
        _block_delta(0, {"type": "input_json_delta", "partial_json": "{}"}),
        _stop(0),
        _message_delta("tool_use", output_tokens=4),
    ]
    summary = _summary(_run(events))
    assert summary[0] == ({"role": "assistant", "content": None}, None)
    assert all("content" not in delta for delta, _ in summary[1:])


def test_empty_stream_still_opens_with_the_role() -> None:
    summary = _summary(_run([_start(), _message_delta("end_turn", output_tokens=0)]))
    assert summary == [({"role": "assistant", "content": None}, None), ({}, "stop")]


def test_stream_thinking_then_text() -> None:
    events = [
        _start(),
        _block_start(0, {"type": "thinking", "thinking": ""}),
        _block_delta(0, {"type": "thinking_delta", "thinking": "Hmm"}),
        _block_delta(0, {"type": "signature_delta", "signature": "EqQB"}),
        _stop(0),
        _block_start(1, {"type": "text", "text": ""}),
        _block_delta(1, {"type": "text_delta", "text": "42"}),
        _stop(1),
        _message_delta("max_tokens", output_tokens=3),
        {"type": "message_stop"},
    ]
    assert _summary(_run(events)) == [
        # Content is null until the text starts, as from OpenAI-compatible reasoning servers.
        ({"role": "assistant", "content": None}, None),
        ({"reasoning_content": "Hmm"}, None),
        # The whole signed block, once it ends, for a client to send back.
        ({"thinking_blocks": [{"type": "thinking", "thinking": "Hmm", "signature": "EqQB"}]}, None),
        ({"content": "42"}, None),
        ({}, "length"),
    ]


def test_stream_usage_takes_updated_counts_from_message_delta() -> None:
    stream = MessagesToChatStream("alias", created=1, include_usage=False)
    stream.feed(_start(cache_creation_input_tokens=7))
    assert stream.usage == Usage(prompt_tokens=32, completion_tokens=1, cache_write_tokens=7)
    stream.feed(_message_delta("end_turn", output_tokens=50, input_tokens=30))
    assert stream.usage == Usage(prompt_tokens=37, completion_tokens=50, cache_write_tokens=7)
    assert stream.finish() == []


def test_stream_message_stop_and_ping_emit_nothing() -> None:
    stream = MessagesToChatStream("alias", created=1, include_usage=True)
    stream.feed(_start())
    assert stream.feed({"type": "ping"}) == []
    assert stream.feed({"type": "message_stop"}) == []


def test_stream_error_event_raises() -> None:
    stream = MessagesToChatStream("alias", created=1, include_usage=False)
    stream.feed(_start())
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamStreamError) as info:
        stream.feed(error)
    assert info.value.message == "Overloaded"
    assert info.value.error_type == "overloaded_error"
