"""OpenAI Responses client over a Chat Completions upstream: request, response and stream."""

from __future__ import annotations

from typing import Any

import pytest

from otari_gateway.translate.errors import TranslationError, UpstreamStreamError
from otari_gateway.translate.responses_stream import ChatToResponsesStream
from otari_gateway.translate.responses_to_chat import (
    chat_response_to_responses,
    response_envelope,
    responses_request_to_chat,
    unsupported_stateful_field,
)
from otari_gateway.translate.usage import responses_usage
from otari_gateway.usage import Usage

MODEL = "upstream-model"
TOOL = {
    "type": "function",
    "name": "search",
    "description": "Search",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    "strict": True,
}


def _envelope(**body: Any) -> dict[str, Any]:
    return response_envelope(body, response_id="resp_abc", model="client-model", created_at=10)


# --- request ---------------------------------------------------------------------------


def test_string_input_and_instructions() -> None:
    out = responses_request_to_chat({"input": "hi", "instructions": "be brief"}, MODEL)
    assert out == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
    }


def test_sampling_limits_and_reasoning_are_mapped() -> None:
    body = {
        "input": "hi",
        "max_output_tokens": 64,
        "temperature": 0.3,
        "top_p": 0.9,
        "reasoning": {"effort": "high"},
        "parallel_tool_calls": False,
        "user": "u1",
        "store": True,
        "metadata": {"a": "b"},
        "truncation": "auto",
    }
    out = responses_request_to_chat(body, MODEL)
    assert out["max_tokens"] == 64
    assert (out["temperature"], out["top_p"]) == (0.3, 0.9)
    assert out["reasoning_effort"] == "high"
    assert out["parallel_tool_calls"] is False
    assert out["user"] == "u1"
    assert not {"store", "metadata", "truncation", "max_output_tokens"} & set(out)


def test_openai_platform_gets_max_completion_tokens() -> None:
    body = {"input": "hi", "max_output_tokens": 64}
    out = responses_request_to_chat(body, "o3-mini", openai_platform=True)
    assert out["max_completion_tokens"] == 64
    assert "max_tokens" not in out


def test_stream_always_asks_for_usage() -> None:
    out = responses_request_to_chat({"input": "hi", "stream": True}, MODEL)
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_message_items_with_parts() -> None:
    out = responses_request_to_chat(
        {
            "input": [
                {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "see"},
                        {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                        {"type": "input_file", "file_data": "data:application/pdf;base64,AA=="},
                    ],
                },
                {"role": "assistant", "content": [{"type": "output_text", "text": "seen"}]},
            ]
        },
        MODEL,
    )
    assert out["messages"] == [
        {"role": "developer", "content": "rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA=="}},
            ],
        },
        {"role": "assistant", "content": "seen"},
    ]


def test_function_calls_merge_into_one_assistant_turn_and_outputs_become_tool_messages() -> None:
    out = responses_request_to_chat(
        {
            "input": [
                {"role": "user", "content": "two lookups"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "search", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "search", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "two"}],
                },
            ]
        },
        MODEL,
    )
    assistant, first, second = out["messages"][1:]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    assert [call["id"] for call in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["tool_calls"][0]["function"] == {"name": "search", "arguments": "{}"}
    assert first == {"role": "tool", "tool_call_id": "c1", "content": "one"}
    assert second == {"role": "tool", "tool_call_id": "c2", "content": "two"}


def test_function_tools_and_tool_choice() -> None:
    out = responses_request_to_chat(
        {"input": "hi", "tools": [TOOL], "tool_choice": {"type": "function", "name": "search"}},
        MODEL,
    )
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search",
                "parameters": TOOL["parameters"],
                "description": "Search",
                "strict": True,
            },
        }
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "search"}}
    assert responses_request_to_chat({"input": "hi", "tool_choice": "required"}, MODEL)[
        "tool_choice"
    ] == ("required")


def test_json_schema_text_format() -> None:
    fmt = {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}
    out = responses_request_to_chat({"input": "hi", "text": {"format": fmt}}, MODEL)
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
    }


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "web_search"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "item_reference"),
        ({"input": [{"type": "computer_call_output"}]}, "computer_call_output"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "file_id",
        ),
        ({"input": "hi", "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
        ({"input": []}, "input"),
        ({"input": [{"role": "tool", "content": "x"}]}, "role"),
    ],
)
def test_untranslatable_requests_name_the_problem(body: dict[str, Any], named: str) -> None:
    with pytest.raises(TranslationError, match=named):
        responses_request_to_chat(body, MODEL)


def test_stateful_fields_are_detected() -> None:
    assert unsupported_stateful_field({"input": "x", "store": True}) is None
    assert unsupported_stateful_field({"previous_response_id": "r"}) == "previous_response_id"
    assert unsupported_stateful_field({"conversation": "c"}) == "conversation"


# --- response --------------------------------------------------------------------------


def test_usage_rendering() -> None:
    usage = Usage(
        prompt_tokens=10,
        completion_tokens=5,
        cache_read_tokens=4,
        cache_write_tokens=1,
        reasoning_tokens=2,
    )
    assert responses_usage(usage) == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 1},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }


def test_envelope_echoes_the_request_and_never_claims_storage() -> None:
    envelope = _envelope(instructions="x", store=True, temperature=0.5, tools=[TOOL])
    assert envelope["id"] == "resp_abc"
    assert envelope["model"] == "client-model"
    assert envelope["status"] == "in_progress"
    assert envelope["store"] is False
    assert (envelope["instructions"], envelope["temperature"]) == ("x", 0.5)
    assert envelope["tools"] == [TOOL]


def test_chat_response_with_reasoning_text_and_calls() -> None:
    chat = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "let me look",
                    "reasoning_content": "thinking",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "search", "arguments": '{"q":"a"}'},
                        }
                    ],
                },
            }
        ]
    }
    usage = Usage(prompt_tokens=3, completion_tokens=4)
    out = chat_response_to_responses(chat, _envelope(), usage, completed_at=11)
    assert out["status"] == "completed"
    assert out["completed_at"] == 11
    assert out["usage"]["total_tokens"] == 7
    reasoning, message, call = out["output"]
    assert reasoning == {
        "id": "rs_abc_0",
        "type": "reasoning",
        "status": "completed",
        "summary": [{"type": "summary_text", "text": "thinking"}],
        "encrypted_content": None,
    }
    assert message["id"] == "msg_abc_1"
    assert message["content"][0]["text"] == "let me look"
    assert call == {
        "id": "fc_abc_2",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "search",
        "arguments": '{"q":"a"}',
    }


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_truncated_answers_are_incomplete(finish: str, reason: str) -> None:
    chat = {"choices": [{"finish_reason": finish, "message": {"content": "par"}}]}
    out = chat_response_to_responses(chat, _envelope(), Usage(), completed_at=1)
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": reason}


def test_the_response_names_the_model_the_upstream_reported() -> None:
    chat = {"model": "gpt-4o-mini-2024-07-18", "choices": [{"message": {"content": "x"}}]}
    out = chat_response_to_responses(chat, _envelope(), Usage(), completed_at=1)
    assert out["model"] == "gpt-4o-mini-2024-07-18"
    del chat["model"]
    assert chat_response_to_responses(chat, _envelope(), Usage(), completed_at=1)["model"] == (
        "client-model"
    )
    stream = ChatToResponsesStream(_envelope())
    # Azure's leading content-filter chunk names no model and opens nothing.
    assert stream.feed({"model": "", "choices": [], "prompt_filter_results": []}) == []
    created = stream.feed({**_chunk({"content": "x"}), "model": "gpt-4o-mini-2024-07-18"})[0]
    assert created["type"] == "response.created"
    assert created["response"]["model"] == "gpt-4o-mini-2024-07-18"
    assert stream.terminal(Usage(), completed_at=1)["response"]["model"] == (
        "gpt-4o-mini-2024-07-18"
    )


def test_refusal_becomes_a_refusal_part() -> None:
    chat = {"choices": [{"finish_reason": "stop", "message": {"content": None, "refusal": "no"}}]}
    out = chat_response_to_responses(chat, _envelope(), Usage(), completed_at=1)
    assert out["output"][0]["content"] == [{"type": "refusal", "refusal": "no"}]


# --- stream ----------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": None}


def _run(chunks: list[dict[str, Any]], usage: Usage | None = None) -> list[dict[str, Any]]:
    stream = ChatToResponsesStream(_envelope())
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        events.extend(stream.feed(chunk))
    events.extend(stream.finish())
    events.append(stream.terminal(usage or stream.usage, completed_at=9))
    return events


def test_text_stream_event_order_and_sequence_numbers() -> None:
    events = _run(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hel"}),
            _chunk({"content": "lo"}),
            _chunk({}, "stop"),
            {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}},
        ]
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress"
    added = events[2]
    assert added["item"] == {
        "id": "msg_abc_0",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert events[5]["delta"] == "lo" and events[5]["item_id"] == "msg_abc_0"
    assert events[6]["text"] == "Hello"
    assert events[7]["part"]["text"] == "Hello"
    assert events[8]["item"]["status"] == "completed"
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert final["output"] == [events[8]["item"]]
    assert final["usage"]["input_tokens"] == 2
    assert final["usage"]["output_tokens"] == 1


def test_reasoning_then_text_then_parallel_calls() -> None:
    events = _run(
        [
            _chunk({"reasoning_content": "hmm"}),
            _chunk({"content": "ok"}),
            _chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "a", "arguments": ""}}
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
            _chunk(
                {
                    "tool_calls": [
                        {"index": 1, "id": "c2", "function": {"name": "b", "arguments": "{}"}}
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            _chunk({}, "tool_calls"),
        ]
    )
    types = [e["type"] for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert [item["id"] for item in output] == ["rs_abc_0", "msg_abc_1", "fc_abc_2", "fc_abc_3"]
    assert output[2]["arguments"] == '{"x":1}'
    assert (output[2]["call_id"], output[3]["call_id"]) == ("c1", "c2")
    first_done = events[19]
    assert first_done["arguments"] == '{"x":1}' and first_done["name"] == "a"


def test_length_finish_ends_in_response_incomplete() -> None:
    events = _run([_chunk({"content": "cut"}), _chunk({}, "length")], Usage(completion_tokens=1))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-1]["response"]["usage"]["output_tokens"] == 1


def test_an_error_event_continues_the_sequence() -> None:
    stream = ChatToResponsesStream(_envelope())
    sent = stream.feed(_chunk({"content": "par"}))
    [error] = stream.error("api_error", "boom", None)
    assert error == {
        "type": "error",
        "sequence_number": len(sent),
        "code": "api_error",
        "message": "boom",
        "param": None,
    }


def test_an_error_before_any_event_opens_the_response_first() -> None:
    events = ChatToResponsesStream(_envelope()).error("api_error", "boom", None)
    assert [(e["type"], e["sequence_number"]) for e in events] == [
        ("response.created", 0),
        ("response.in_progress", 1),
        ("error", 2),
    ]


def test_empty_stream_still_opens_and_closes() -> None:
    events = _run([])
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert events[-1]["response"]["output"] == []


def test_upstream_error_chunk_raises() -> None:
    stream = ChatToResponsesStream(_envelope())
    with pytest.raises(UpstreamStreamError, match="overloaded"):
        stream.feed({"error": {"message": "overloaded", "type": "server_error"}})
