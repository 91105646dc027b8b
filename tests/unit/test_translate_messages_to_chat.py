"""Anthropic Messages client over an OpenAI-compatible upstream: request, response, stream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from otari_gateway.translate.chat_to_messages import chat_request_to_messages
from otari_gateway.translate.errors import TranslationError, UpstreamStreamError
from otari_gateway.translate.messages_stream import ChatToMessagesStream
from otari_gateway.translate.messages_to_chat import (
    chat_response_to_messages,
    message_id_for,
    messages_request_to_chat,
)
from otari_gateway.usage import Usage

MODEL = "gpt-4o-mini"


def _req(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body = {"model": "alias", "max_tokens": 100, "messages": messages, **extra}
    return messages_request_to_chat(body, MODEL)


# --- request ---------------------------------------------------------------------------


def test_minimal_request() -> None:
    assert _req([{"role": "user", "content": "hi"}]) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100,
    }


def test_openai_platform_gets_max_completion_tokens() -> None:
    body = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    out = messages_request_to_chat(body, "o3-mini", openai_platform=True)
    assert out["max_completion_tokens"] == 100
    assert "max_tokens" not in out


@pytest.mark.parametrize(
    ("model", "openai_platform", "kept"),
    [
        ("o3-mini", True, False),
        ("o1-preview", True, False),
        ("gpt-5", True, False),
        ("gpt-5-chat-latest", True, True),
        ("gpt-4o-mini", True, True),
        # A compatible server is trusted with whatever the client asked for.
        ("o3-mini", False, True),
    ],
)
def test_sampling_settings_reach_only_models_that_take_them(
    model: str, openai_platform: bool, kept: bool
) -> None:
    # OpenAI's reasoning models answer 400 to a temperature other than 1, which Anthropic
    # clients send as a matter of course.
    body = {
        "max_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "messages": [{"role": "user", "content": "hi"}],
    }
    out = messages_request_to_chat(body, model, openai_platform=openai_platform)
    assert ("temperature" in out, "top_p" in out) == (kept, kept)


@pytest.mark.parametrize(
    ("model", "openai_platform", "effort"),
    [
        ("o3-mini", True, "low"),
        ("gpt-5-mini", True, "low"),
        ("gpt-4o-mini", True, None),
        ("gpt-5-chat-latest", True, None),
        # A compatible server is trusted to know its own models (vLLM, DeepSeek …).
        ("gpt-4o-mini", False, "low"),
        ("deepseek-r1", False, "low"),
    ],
)
def test_thinking_reaches_openai_only_for_reasoning_models(
    model: str, openai_platform: bool, effort: str | None
) -> None:
    body = {
        "max_tokens": 8_000,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 2_048},
    }
    out = messages_request_to_chat(body, model, openai_platform=openai_platform)
    assert out.get("reasoning_effort") == effort


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("be brief", "be brief"),
        (
            [
                {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "two"},
            ],
            "one\n\ntwo",
        ),
    ],
)
def test_system_becomes_first_message(system: Any, expected: str) -> None:
    out = _req([{"role": "user", "content": "hi"}], system=system)
    assert out["messages"][0] == {"role": "system", "content": expected}


def test_images_base64_and_url() -> None:
    out = _req(
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                    {"type": "text", "text": "compare"},
                ],
            }
        ]
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                {"type": "text", "text": "compare"},
            ],
        }
    ]


def test_unsupported_image_source_raises() -> None:
    block = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    with pytest.raises(TranslationError, match="source type"):
        _req([{"role": "user", "content": [block]}])


def _tool_conversation() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "need a tool", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_A", "name": "weather", "input": {"city": "P"}},
                {"type": "tool_use", "id": "call_B", "name": "time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "also this"},
                {"type": "tool_result", "tool_use_id": "toolu_A", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_B",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "clock"},
                        {"type": "text", "text": "broke"},
                    ],
                },
            ],
        },
    ]


def test_tool_use_and_results_keep_ids_and_order() -> None:
    out = _req(_tool_conversation())
    assert out["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_A",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"P"}'},
                },
                {
                    "id": "call_B",
                    "type": "function",
                    "function": {"name": "time", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_A", "content": "sunny"},
        # Chat has no is_error: the failure is said in the result's text.
        {"role": "tool", "tool_call_id": "call_B", "content": "Error: clock\nbroke"},
        {"role": "user", "content": "also this"},
    ]


@pytest.mark.parametrize(
    ("content", "sent"),
    [("Error: disk full", "Error: disk full"), ("ERROR 42", "ERROR 42"), ("", "Error")],
)
def test_failed_tool_results_are_not_marked_twice(content: str, sent: str) -> None:
    result = {"type": "tool_result", "tool_use_id": "t", "is_error": True, "content": content}
    tool_message = _req([{"role": "user", "content": [result]}])["messages"][0]
    assert tool_message == {"role": "tool", "tool_call_id": "t", "content": sent}


def test_images_in_tool_results_follow_the_tool_messages() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://x.test/s.png"}}
    result = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": [{"type": "text", "text": "shot"}, image],
    }
    out = _req([{"role": "user", "content": [result]}])
    assert out["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "shot"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x.test/s.png"}}],
        },
    ]


def test_tool_ids_survive_a_round_trip() -> None:
    chat = _req(_tool_conversation())
    back = chat_request_to_messages(chat, "claude")
    assistant = back["messages"][1]["content"]
    results = back["messages"][2]["content"]
    assert [b["id"] for b in assistant if b["type"] == "tool_use"] == ["toolu_A", "call_B"]
    assert [b["tool_use_id"] for b in results if b["type"] == "tool_result"] == [
        "toolu_A",
        "call_B",
    ]
    assert assistant[1]["input"] == {"city": "P"}


def test_assistant_with_only_thinking_is_dropped() -> None:
    out = _req(
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}]},
        ]
    )
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_params_stream_and_dropped_fields() -> None:
    out = _req(
        [{"role": "user", "content": "x"}],
        stop_sequences=["END"],
        temperature=0.3,
        top_p=0.8,
        top_k=40,
        stream=True,
        metadata={"user_id": "u-9"},
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert out == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.8,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-9",
        "reasoning_effort": "low",  # from thinking's 1,024-token budget
    }


_TOOL = {
    "name": "weather",
    "description": "Get weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_tools_become_function_tools() -> None:
    out = _req([{"role": "user", "content": "x"}], tools=[_TOOL])
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Get weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]


def test_server_tools_raise() -> None:
    tool = {"type": "web_search_20250305", "name": "web_search"}
    with pytest.raises(TranslationError, match="server tool"):
        _req([{"role": "user", "content": "x"}], tools=[tool])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "weather"},
            {"tool_choice": {"type": "function", "function": {"name": "weather"}}},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    out = _req([{"role": "user", "content": "x"}], tools=[_TOOL], tool_choice=choice)
    assert {k: out[k] for k in ("tool_choice", "parallel_tool_calls") if k in out} == expected


# --- response --------------------------------------------------------------------------


def _completion(message: dict[str, Any], finish_reason: str | None = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    }


def test_response_with_reasoning_text_and_tool_calls() -> None:
    message = {
        "role": "assistant",
        "content": "Checking.",
        "reasoning_content": "think",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "P"}'},
            }
        ],
    }
    out = chat_response_to_messages(_completion(message, "tool_calls"), "alias")
    assert out == {
        "id": "msg_chatcmpl-123",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "thinking", "thinking": "think", "signature": ""},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "P"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "output_tokens": 30,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 0,
        },
    }


def test_response_id_is_stable_and_prefixed_once() -> None:
    assert message_id_for("chatcmpl-1") == "msg_chatcmpl-1"
    assert message_id_for("msg_abc") == "msg_abc"
    resp = _completion({"role": "assistant", "content": "x"})
    assert chat_response_to_messages(resp, "a")["id"] == chat_response_to_messages(resp, "a")["id"]


def test_empty_content_gives_no_text_block() -> None:
    out = chat_response_to_messages(_completion({"role": "assistant", "content": ""}), "a")
    assert out["content"] == []


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("", {}),
        ("{bad", {"_raw_arguments": "{bad"}),
        ("[1]", {"_raw_arguments": "[1]"}),
    ],
)
def test_unparseable_tool_arguments_are_kept_raw(arguments: str, expected: dict[str, Any]) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    resp = _completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls")
    assert chat_response_to_messages(resp, "a")["content"][0]["input"] == expected


@pytest.mark.parametrize(
    ("finish_reason", "has_tools", "stop_reason"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("function_call", True, "tool_use"),
        ("content_filter", False, "refusal"),
        (None, False, "end_turn"),
        ("stop", True, "tool_use"),
        ("length", True, "max_tokens"),
    ],
)
def test_stop_reason_mapping(finish_reason: str | None, has_tools: bool, stop_reason: str) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if has_tools:
        message["tool_calls"] = [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
    out = chat_response_to_messages(_completion(message, finish_reason), "a")
    assert out["stop_reason"] == stop_reason


# --- streaming -------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _usage_chunk(**usage: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-s", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def _run(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    stream = ChatToMessagesStream("alias", message_id="msg_X")
    events = [event for chunk in chunks for event in stream.feed(chunk)]
    return events + stream.finish()


def _names(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in events]


def _deltas(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    return [(d["index"], d["delta"]) for name, d in events if name == "content_block_delta"]


def test_stream_text_answer() -> None:
    events = _run(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hel"}),
            _chunk({"content": "lo"}),
            _chunk({}, "stop"),
            _usage_chunk(prompt_tokens=11, completion_tokens=2, total_tokens=13),
        ]
    )
    assert _names(events) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ]
    assert events[0][1]["message"]["id"] == "msg_X"
    assert events[0][1]["message"]["model"] == MODEL
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert _deltas(events) == [
        (0, {"type": "text_delta", "text": "Hel"}),
        (0, {"type": "text_delta", "text": "lo"}),
    ]
    assert events[-1][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 11, "output_tokens": 2},
    }


def _tool_delta(index: int, **fields: Any) -> dict[str, Any]:
    return _chunk({"tool_calls": [{"index": index, **fields}]})


def test_stream_tool_call_answer() -> None:
    first = {"name": "weather", "arguments": ""}
    events = _run(
        [
            _chunk({"role": "assistant", "content": "Checking."}),
            _tool_delta(0, id="call_A", type="function", function=first),
            _tool_delta(0, function={"arguments": '{"ci'}),
            _tool_delta(0, function={"arguments": 'ty": "P"}'}),
            _tool_delta(
                1, id="call_B", type="function", function={"name": "time", "arguments": "{}"}
            ),
            _chunk({}, "tool_calls"),
            _usage_chunk(
                prompt_tokens=50,
                completion_tokens=9,
                prompt_tokens_details={"cached_tokens": 40},
            ),
        ]
    )
    assert _names(events) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ]
    starts = [d for name, d in events if name == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[1]["content_block"] == {
        "type": "tool_use",
        "id": "call_A",
        "name": "weather",
        "input": {},
    }
    assert starts[2]["content_block"]["id"] == "call_B"
    stops = [d["index"] for name, d in events if name == "content_block_stop"]
    assert stops == [0, 1, 2]
    partial = "".join(
        d["partial_json"] for i, d in _deltas(events) if i == 1 and d["type"] == "input_json_delta"
    )
    assert orjson.loads(partial) == {"city": "P"}
    assert events[-1][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-1][1]["usage"] == {
        "input_tokens": 10,
        "output_tokens": 9,
        "cache_read_input_tokens": 40,
    }


def test_stream_thinking_then_text() -> None:
    events = _run(
        [
            _chunk({"role": "assistant", "reasoning_content": "Hm"}),
            _chunk({"reasoning_content": "m."}),
            _chunk({"content": "42"}),
            _chunk({}, "length"),
        ]
    )
    assert _names(events) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ]
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert _deltas(events) == [
        (0, {"type": "thinking_delta", "thinking": "Hm"}),
        (0, {"type": "thinking_delta", "thinking": "m."}),
        (1, {"type": "text_delta", "text": "42"}),
    ]
    assert events[-1][1]["delta"]["stop_reason"] == "max_tokens"


def test_stream_tool_calls_without_index_are_split_by_id() -> None:
    events = _run(
        [
            _chunk({"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}]}),
            _chunk({"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
            _chunk({}, "stop"),
        ]
    )
    starts = [d["content_block"]["id"] for n, d in events if n == "content_block_start"]
    assert starts == ["a", "b"]
    assert events[-1][1]["delta"]["stop_reason"] == "tool_use"


def test_stream_finish_reason_waits_for_usage() -> None:
    stream = ChatToMessagesStream("alias", message_id="msg_X")
    stream.feed(_chunk({"content": "x"}))
    assert _names(stream.feed(_chunk({}, "stop"))) == []
    assert stream.feed(_usage_chunk(prompt_tokens=4, completion_tokens=1)) == []
    assert stream.usage == Usage(prompt_tokens=4, completion_tokens=1)
    assert _names(stream.finish()) == ["content_block_stop", "message_delta"]


def test_stream_input_tokens_in_message_start_when_known() -> None:
    stream = ChatToMessagesStream("alias", message_id="msg_X")
    first = {**_chunk({"content": ""}), "usage": {"prompt_tokens": 7, "completion_tokens": 0}}
    events = stream.feed(first)
    assert events[0][1]["message"]["usage"] == {"input_tokens": 7, "output_tokens": 0}


def test_a_refusal_is_the_text_and_the_stop_reason() -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    out = chat_response_to_messages(_completion(message, "stop"), "alias")
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"


def test_a_streamed_refusal_is_the_text_and_the_stop_reason() -> None:
    events = _run(
        [
            _chunk({"role": "assistant", "content": None, "refusal": ""}),
            _chunk({"refusal": "I can't"}),
            _chunk({"refusal": " help."}),
            _chunk({}, "stop"),
        ]
    )
    text = "".join(d["text"] for _, d in _deltas(events))
    assert text == "I can't help."
    assert events[-1][1]["delta"]["stop_reason"] == "refusal"


def test_models_the_upstream_does_not_name_fall_back_to_the_given_name() -> None:
    completion = _completion({"role": "assistant", "content": "x"}, "stop")
    del completion["model"]
    assert chat_response_to_messages(completion, "fallback")["model"] == "fallback"
    stream = ChatToMessagesStream("fallback", message_id="msg_X")
    chunk = {k: v for k, v in _chunk({"content": "x"}).items() if k != "model"}
    assert stream.feed(chunk)[0][1]["message"]["model"] == "fallback"


def test_stream_skips_azures_leading_content_filter_chunk() -> None:
    stream = ChatToMessagesStream("fallback", message_id="msg_X")
    filters = {"id": "", "model": "", "choices": [], "prompt_filter_results": []}
    assert stream.feed(filters) == []
    assert stream.feed(_chunk({"content": "x"}))[0][1]["message"]["model"] == MODEL


def test_stream_message_start_counts_the_input_until_the_upstream_does() -> None:
    stream = ChatToMessagesStream("alias", message_id="msg_X", input_tokens=42)
    start = stream.feed(_chunk({"content": ""}))[0][1]
    assert start["message"]["usage"] == {"input_tokens": 42, "output_tokens": 0}
    stream.feed(_chunk({}, "stop"))
    stream.feed(_usage_chunk(prompt_tokens=40, completion_tokens=1))
    assert stream.finish()[-1][1]["usage"] == {"input_tokens": 40, "output_tokens": 1}


def test_stream_with_no_chunks_still_produces_a_valid_message() -> None:
    events = ChatToMessagesStream("alias", message_id="msg_X").finish()
    assert _names(events) == ["message_start", "message_delta"]
    assert events[-1][1]["delta"]["stop_reason"] == "end_turn"


def test_stream_error_chunk_raises() -> None:
    stream = ChatToMessagesStream("alias", message_id="msg_X")
    with pytest.raises(UpstreamStreamError) as info:
        stream.feed({"error": {"message": "boom", "type": "server_error"}})
    assert (info.value.message, info.value.error_type) == ("boom", "server_error")
