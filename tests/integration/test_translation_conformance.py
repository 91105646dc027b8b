"""Cross-format translation through the real gateway, in both directions.

* OpenAI SDK (``/v1/chat/completions``) on an Anthropic upstream: what the Anthropic fake
  receives (system, images, tools, tool results) and what the client gets back (tool-call
  ids verbatim, finish reasons, usage), streamed and not.
* Anthropic SDK (``/v1/messages``) on an OpenAI upstream: the mirror image, including the
  raw stream's event order and ``message_delta.usage``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import orjson
import pytest
from pydantic import BaseModel

from tests.fakes import content as c
from tests.fakes.azure_openai_upstream import FakeAzureOpenAI
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import MASTER_KEY, Stack, create_key, usage_rows
from tests.integration.gateway_process import GatewayProcess

ANTHROPIC_MODEL = "anthropic:claude-sonnet-4-5"
OPENAI_MODEL = "openai:gpt-4o"

OPENAI_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
ANTHROPIC_TOOLS: Any = [
    {
        "name": "search",
        "description": "Search the web",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
USER_Q: Any = [{"role": "user", "content": "what now"}]


def _anthropic_sent(stack: Stack) -> dict[str, Any]:
    request = stack.anthropic_fake.last_request
    assert request.path == "/v1/messages"
    assert isinstance(request.json, dict)
    return request.json


def _openai_sent(stack: Stack) -> dict[str, Any]:
    request = stack.openai_fake.last_request
    assert request.path == "/v1/chat/completions"
    assert isinstance(request.json, dict)
    return request.json


# --------------------------------------------------------------------------- OpenAI → Anthropic


def test_chat_on_anthropic_system_prompt_and_upstream_shape(stack: Stack) -> None:
    with stack.openai_client() as client:
        reply = client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi there"},
            ],
            max_tokens=64,
            temperature=0.5,
        )
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "echo: hi there"
    assert reply.choices[0].finish_reason == "stop"
    request = stack.anthropic_fake.last_request
    assert request.headers["x-api-key"] == stack.anthropic_fake.api_key
    assert request.headers.get("anthropic-version")
    sent = _anthropic_sent(stack)
    assert sent["model"] == "claude-sonnet-4-5"
    assert c.text_of(sent["system"]) == "be brief"
    assert all(m["role"] in ("user", "assistant") for m in sent["messages"])
    assert len(sent["messages"]) == 1
    assert c.text_of(sent["messages"][0]["content"]) == "hi there"
    assert sent["max_tokens"] == 64
    assert sent["temperature"] == 0.5
    assert stack.openai_fake.requests == []


def test_chat_on_anthropic_sets_max_tokens_when_absent(stack: Stack) -> None:
    with stack.openai_client() as client:
        client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    sent = _anthropic_sent(stack)
    assert isinstance(sent["max_tokens"], int) and sent["max_tokens"] > 0


def test_chat_on_anthropic_reasoning_effort_becomes_extended_thinking(stack: Stack) -> None:
    with stack.openai_client() as client:
        client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=USER_Q, max_tokens=16_000, reasoning_effort="high"
        )
    assert _anthropic_sent(stack)["thinking"] == {"type": "enabled", "budget_tokens": 15_999}


def test_messages_on_openai_reasoning_model_thinking_and_token_limit(stack: Stack) -> None:
    # OpenAI's reasoning models refuse max_tokens: the limit goes as max_completion_tokens.
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model="openai:o3-mini",
            max_tokens=8_000,
            messages=USER_Q,
            thinking={"type": "enabled", "budget_tokens": 2_048},
        )
    assert message.content[-1].type == "text"
    sent = _openai_sent(stack)
    assert sent["reasoning_effort"] == "low"
    assert sent["max_completion_tokens"] == 8_000
    assert "max_tokens" not in sent and "thinking" not in sent


def test_messages_on_openai_thinking_on_a_model_that_does_not_reason(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model="openai:gpt-4o-mini",
            max_tokens=8_000,
            messages=USER_Q,
            thinking={"type": "enabled", "budget_tokens": 2_048},
        )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: what now"
    assert "reasoning_effort" not in _openai_sent(stack)


@dataclass
class OtherUpstreams:
    """A gateway with a vLLM instance (an OpenAI-compatible server) and an Azure OpenAI one."""

    gateway: GatewayProcess
    vllm: FakeOpenAI
    azure: FakeAzureOpenAI

    def anthropic_client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20
        )

    def openai_client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20
        )


@pytest.fixture(scope="module")
def other_upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtherUpstreams]:
    with FakeOpenAI(api_key="sk-fake-vllm") as vllm, FakeAzureOpenAI() as azure:
        config = {
            "master_key": MASTER_KEY,
            "require_pricing": False,
            "discover_models": False,
            "providers": {
                "vllm": {
                    "provider_type": "vllm",
                    "api_key": vllm.api_key,
                    "api_base": vllm.base_url + "/v1",
                },
                "azure": {
                    "provider_type": "azureopenai",
                    "api_key": azure.api_key,
                    "api_base": azure.base_url,
                },
            },
        }
        gateway = GatewayProcess(config, tmp_path_factory.mktemp("other-upstreams"))
        gateway.start()
        try:
            yield OtherUpstreams(gateway, vllm, azure)
        finally:
            gateway.stop()


@pytest.mark.parametrize(
    ("model", "limit_field"),
    [("vllm:qwen3-8b", "max_tokens"), ("azure:my-gpt4o-deployment", "max_completion_tokens")],
)
def test_messages_token_limit_name_follows_the_upstream(
    other_upstreams: OtherUpstreams, model: str, limit_field: str
) -> None:
    with other_upstreams.anthropic_client() as client:
        client.messages.create(
            model=model, max_tokens=77, messages=USER_Q, metadata={"user_id": "tester"}
        )
    fake = other_upstreams.vllm if model.startswith("vllm:") else other_upstreams.azure
    sent = fake.last_request.json_object()
    assert sent[limit_field] == 77
    assert {"max_tokens", "max_completion_tokens"} & set(sent) == {limit_field}


def test_messages_stream_from_azure_names_the_deployed_model(
    other_upstreams: OtherUpstreams,
) -> None:
    # Azure's stream opens with a content-filter chunk that names no model.
    with (
        other_upstreams.anthropic_client() as client,
        client.messages.stream(
            model="azure:my-gpt4o-deployment",
            max_tokens=50,
            messages=USER_Q,
            metadata={"user_id": "tester"},
        ) as stream,
    ):
        events = list(stream)
    start = events[0]
    assert start.type == "message_start"
    assert start.message.model == "my-gpt4o-deployment"
    assert stream.get_final_message().content[0].type == "text"


def test_responses_bridged_to_azure_send_max_completion_tokens(
    other_upstreams: OtherUpstreams,
) -> None:
    with other_upstreams.openai_client() as client:
        client.responses.create(
            model="azure:my-gpt4o-deployment", input="hi", max_output_tokens=77, user="tester"
        )
    sent = other_upstreams.azure.last_request.json_object()
    assert sent["max_completion_tokens"] == 77
    assert "max_tokens" not in sent


def test_chat_on_anthropic_image_data_url_becomes_base64_block(stack: Stack) -> None:
    parts: Any = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_BASE64}"}},
    ]
    with stack.openai_client() as client:
        reply = client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": parts}]
        )
    assert reply.choices[0].message.content == "echo: describe"
    blocks = _anthropic_sent(stack)["messages"][0]["content"]
    images = [b for b in blocks if b.get("type") == "image"]
    assert images == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64},
        }
    ]
    assert {"type": "text", "text": "describe"} in blocks


def test_chat_on_anthropic_tools_and_tool_call(stack: Stack) -> None:
    with stack.openai_client() as client:
        reply = client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": "weather in Oslo"}],
            tools=OPENAI_TOOLS,
            tool_choice="auto",
        )
    sent = _anthropic_sent(stack)
    assert len(sent["tools"]) == 1
    tool = sent["tools"][0]
    assert tool["name"] == "search"
    assert tool["description"] == "Search the web"
    assert tool["input_schema"] == OPENAI_TOOLS[0]["function"]["parameters"]
    assert sent.get("tool_choice", {"type": "auto"}) == {"type": "auto"}

    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].id == "toolu_fake_1"
    assert calls[0].type == "function"
    assert calls[0].function.name == "search"
    assert orjson.loads(calls[0].function.arguments) == {"query": "weather in Oslo"}
    assert reply.usage is not None
    assert reply.usage.completion_tokens == c.TOOL_CALL_OUTPUT_TOKENS


def test_chat_on_anthropic_tool_result_round_trip(stack: Stack) -> None:
    with stack.openai_client() as client:
        first = client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": "weather in Oslo"}],
            tools=OPENAI_TOOLS,
        )
        calls = first.choices[0].message.tool_calls
        assert calls is not None
        call = calls[0]
        follow_up: Any = [
            {"role": "user", "content": "weather in Oslo"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": call.function.arguments,
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "cold and snowy"},
        ]
        second = client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=follow_up, tools=OPENAI_TOOLS
        )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "echo: weather in Oslo"
    messages = _anthropic_sent(stack)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    tool_uses = [b for b in messages[1]["content"] if b.get("type") == "tool_use"]
    assert tool_uses == [
        {
            "type": "tool_use",
            "id": call.id,
            "name": "search",
            "input": {"query": "weather in Oslo"},
        }
    ]
    results = [b for b in messages[2]["content"] if b.get("type") == "tool_result"]
    assert len(results) == 1
    assert results[0]["tool_use_id"] == call.id == "toolu_fake_1"
    assert c.text_of(results[0]["content"]) == "cold and snowy"


def test_chat_on_anthropic_stop_reason_max_tokens_maps_to_length(stack: Stack) -> None:
    canned = {
        "id": "msg_canned",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "cut sh"}],
        "stop_reason": "max_tokens",
        "stop_sequence": None,
        "usage": {"input_tokens": 4, "output_tokens": 2},
    }
    stack.anthropic_fake.fail_next(200, body=canned)
    with stack.openai_client() as client:
        reply = client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "long story"}]
        )
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "cut sh"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 2)


def test_chat_on_anthropic_paused_turn_is_unfinished(stack: Stack) -> None:
    canned = {
        "id": "msg_paused",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Searching"}],
        "stop_reason": "pause_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 4, "output_tokens": 1},
    }
    stack.anthropic_fake.fail_next(200, body=canned)
    with stack.openai_client() as client:
        reply = client.chat.completions.create(model=ANTHROPIC_MODEL, messages=USER_Q)
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "Searching"


def test_chat_on_anthropic_usage(stack: Stack) -> None:
    with stack.openai_client() as client:
        reply = client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "one two three"},
            ],
        )
    assert reply.usage is not None
    # The fake counts words of system + messages, and of "echo: one two three".
    assert reply.usage.prompt_tokens == 5
    assert reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == 9


def test_chat_on_anthropic_stream_text_and_usage(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": "stream me please"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as stream,
    ):
        chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "echo: stream me please"
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finishes[-1] == "stop"
    usage_chunks = [ch for ch in chunks if ch.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    usage = usage_chunks[0].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 4, 7)
    assert _anthropic_sent(stack)["stream"] is True


def test_chat_on_anthropic_stream_without_include_usage(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        ) as stream,
    ):
        chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)


def test_chat_on_anthropic_stream_tool_call(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": "flights to Rome"}],
            tools=OPENAI_TOOLS,
            stream=True,
        ) as stream,
    ):
        chunks = list(stream)
    ids: list[str] = []
    names: list[str] = []
    arguments = ""
    finish: str | None = None
    for chunk in chunks:
        for choice in chunk.choices:
            assert choice.index == 0
            for call in choice.delta.tool_calls or []:
                assert call.index == 0
                if call.id:
                    ids.append(call.id)
                if call.function and call.function.name:
                    names.append(call.function.name)
                if call.function and call.function.arguments:
                    arguments += call.function.arguments
            finish = choice.finish_reason or finish
    assert ids == ["toolu_fake_1"]
    assert names == ["search"]
    assert orjson.loads(arguments) == {"query": "flights to Rome"}
    assert finish == "tool_calls"


def test_chat_on_anthropic_streamed_tool_calls_leave_content_null(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.chat.completions.stream(
            model=ANTHROPIC_MODEL, messages=USER_Q, tools=OPENAI_TOOLS
        ) as stream,
    ):
        message = stream.get_final_completion().choices[0].message
    assert message.content is None
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    with (
        stack.openai_client() as client,
        client.chat.completions.stream(model=ANTHROPIC_MODEL, messages=USER_Q) as stream,
    ):
        assert stream.get_final_completion().choices[0].message.content == "echo: what now"


def test_chat_on_anthropic_n_greater_than_one_is_refused(stack: Stack) -> None:
    with stack.openai_client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "x"}], n=2
        )
    assert caught.value.status_code == 400
    assert stack.anthropic_fake.requests == []


# --------------------------------------------------------------------------- Anthropic → OpenAI


def test_messages_on_openai_system_and_upstream_shape(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=100,
            system="talk like a pirate",
            messages=[{"role": "user", "content": "ahoy matey"}],
        )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: ahoy matey"
    # 4 words of system + 2 of user; "echo: ahoy matey" is 3.
    assert (message.usage.input_tokens, message.usage.output_tokens) == (6, 3)
    request = stack.openai_fake.last_request
    assert request.headers["authorization"] == f"Bearer {stack.openai_fake.api_key}"
    sent = _openai_sent(stack)
    assert sent["model"] == "gpt-4o"
    first = sent["messages"][0]
    assert first["role"] == "system"
    assert c.text_of(first["content"]) == "talk like a pirate"
    assert sent["messages"][-1]["role"] == "user"
    assert c.text_of(sent["messages"][-1]["content"]) == "ahoy matey"
    assert sum(1 for m in sent["messages"] if m["role"] == "system") == 1
    assert stack.anthropic_fake.requests == []


def test_messages_on_openai_system_blocks(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=100,
            system=[{"type": "text", "text": "first rule"}, {"type": "text", "text": "second"}],
            messages=[{"role": "user", "content": "hi"}],
        )
    first = _openai_sent(stack)["messages"][0]
    assert first["role"] == "system"
    text = c.text_of(first["content"])
    assert "first rule" in text and "second" in text


def test_messages_on_openai_tool_use(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=100,
            tools=ANTHROPIC_TOOLS,
            messages=[{"role": "user", "content": "price of gold"}],
        )
    assert message.stop_reason == "tool_use"
    tool_uses = [b for b in message.content if b.type == "tool_use"]
    assert len(tool_uses) == 1
    block = tool_uses[0]
    assert block.type == "tool_use"
    assert block.id == "call_fake_1"
    assert block.name == "search"
    assert block.input == {"query": "price of gold"}
    sent = _openai_sent(stack)
    assert len(sent["tools"]) == 1
    tool = sent["tools"][0]
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "search"
    assert tool["function"]["description"] == "Search the web"
    assert tool["function"]["parameters"] == ANTHROPIC_TOOLS[0]["input_schema"]


def test_messages_on_openai_tool_result_round_trip(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        first = client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=100,
            tools=ANTHROPIC_TOOLS,
            messages=[{"role": "user", "content": "price of gold"}],
        )
        block = next(b for b in first.content if b.type == "tool_use")
        assert block.type == "tool_use"
        history: Any = [
            {"role": "user", "content": "price of gold"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": block.id, "content": "2000 USD"}
                ],
            },
        ]
        second = client.messages.create(
            model=OPENAI_MODEL, max_tokens=100, tools=ANTHROPIC_TOOLS, messages=history
        )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert second.content[0].text == "echo: price of gold"
    messages = _openai_sent(stack)["messages"]
    assistant = next(m for m in messages if m["role"] == "assistant")
    assert [call["id"] for call in assistant["tool_calls"]] == ["call_fake_1"]
    assert assistant["tool_calls"][0]["function"]["name"] == "search"
    assert orjson.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {
        "query": "price of gold"
    }
    tools = [m for m in messages if m["role"] == "tool"]
    assert len(tools) == 1
    assert tools[0]["tool_call_id"] == "call_fake_1"
    assert c.text_of(tools[0]["content"]) == "2000 USD"
    assert messages[-1]["role"] == "tool"


def test_messages_on_openai_failed_tool_result_is_marked(stack: Stack) -> None:
    history: Any = [
        {"role": "user", "content": "price of gold"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call_1", "name": "search", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1",
                    "is_error": True,
                    "content": "upstream timed out",
                }
            ],
        },
    ]
    with stack.anthropic_client() as client:
        client.messages.create(
            model=OPENAI_MODEL, max_tokens=100, tools=ANTHROPIC_TOOLS, messages=history
        )
    [tool] = [m for m in _openai_sent(stack)["messages"] if m["role"] == "tool"]
    assert tool["content"] == "Error: upstream timed out"


def test_messages_on_openai_refusal_is_a_refusal(stack: Stack) -> None:
    canned = {
        "id": "chatcmpl-refused",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": "I can't help."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
    }
    stack.openai_fake.fail_next(200, body=canned)
    with stack.anthropic_client() as client:
        message = client.messages.create(model=OPENAI_MODEL, max_tokens=50, messages=USER_Q)
    assert message.stop_reason == "refusal"
    assert message.content[0].type == "text"
    assert message.content[0].text == "I can't help."


def test_messages_on_openai_stop_reason_length_maps_to_max_tokens(stack: Stack) -> None:
    canned = {
        "id": "chatcmpl-canned",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "cut sh"},
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }
    stack.openai_fake.fail_next(200, body=canned)
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model=OPENAI_MODEL, max_tokens=2, messages=[{"role": "user", "content": "long"}]
        )
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 2)


def test_messages_on_openai_stream_final_message_with_tool_use(stack: Stack) -> None:
    with (
        stack.anthropic_client() as client,
        client.messages.stream(
            model=OPENAI_MODEL,
            max_tokens=100,
            tools=ANTHROPIC_TOOLS,
            messages=[{"role": "user", "content": "stock of ACME"}],
        ) as stream,
    ):
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool_uses = [b for b in final.content if b.type == "tool_use"]
    assert len(tool_uses) == 1
    block = tool_uses[0]
    assert block.type == "tool_use"
    assert block.id == "call_fake_1"
    assert block.name == "search"
    assert block.input == {"query": "stock of ACME"}
    assert final.usage.output_tokens == c.TOOL_CALL_OUTPUT_TOKENS
    assert final.usage.input_tokens == 3


def test_messages_on_openai_stream_text(stack: Stack) -> None:
    with (
        stack.anthropic_client() as client,
        client.messages.stream(
            model=OPENAI_MODEL,
            max_tokens=100,
            system="short",
            messages=[{"role": "user", "content": "tell me more"}],
        ) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: tell me more"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, 4)


def test_messages_on_openai_raw_stream_events(stack: Stack) -> None:
    messages: Any = [{"role": "user", "content": "one two three"}]
    with stack.anthropic_client() as client:
        counted = client.messages.count_tokens(model=OPENAI_MODEL, messages=messages)
        with client.messages.create(
            model=OPENAI_MODEL, max_tokens=100, messages=messages, stream=True
        ) as stream:
            events = list(stream)
    types = [event.type for event in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert types.count("message_start") == 1
    assert types.count("message_stop") == 1
    assert types.count("message_delta") == 1
    assert types.index("content_block_start") < types.index("content_block_delta")
    assert types.index("content_block_stop") < types.index("message_delta")
    assert types.index("message_delta") == len(types) - 2
    delta = next(event for event in events if event.type == "message_delta")
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    # Translated streams must report the final counts in message_delta (API.md).
    assert delta.usage.input_tokens == 3
    assert delta.usage.output_tokens == 4
    start = events[0]
    assert start.type == "message_start"
    assert start.message.role == "assistant"
    assert start.message.model == "gpt-4o"
    # OpenAI reports usage only at the end; clients (LangChain) read the input here, so it is
    # the gateway's own count until message_delta brings the upstream's.
    assert start.message.usage.input_tokens == counted.input_tokens > 0
    text = "".join(
        event.delta.text
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    )
    assert text == "echo: one two three"


def test_messages_on_openai_raw_stream_tool_use(stack: Stack) -> None:
    with (
        stack.anthropic_client() as client,
        client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=100,
            tools=ANTHROPIC_TOOLS,
            messages=[{"role": "user", "content": "news today"}],
            stream=True,
        ) as stream,
    ):
        events = list(stream)
    starts = [e for e in events if e.type == "content_block_start"]
    tool_starts = [e for e in starts if e.content_block.type == "tool_use"]
    assert len(tool_starts) == 1
    block = tool_starts[0].content_block
    assert block.type == "tool_use"
    assert block.id == "call_fake_1"
    assert block.name == "search"
    partial = "".join(
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    )
    assert orjson.loads(partial) == {"query": "news today"}
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "tool_use"
    assert delta.usage.output_tokens == c.TOOL_CALL_OUTPUT_TOKENS
    assert delta.usage.input_tokens == 2
    assert events[-1].type == "message_stop"


def test_translated_answers_name_the_upstream_model(stack: Stack) -> None:
    # As a same-format relay does: the model the upstream reported, not the selector.
    with stack.openai_client() as client:
        reply = client.chat.completions.create(model="claude", messages=USER_Q)
        with client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=USER_Q, stream=True
        ) as stream:
            streamed = {chunk.model for chunk in stream}
    assert reply.model == "claude-sonnet-4-5"
    assert streamed == {"claude-sonnet-4-5"}
    with stack.anthropic_client() as client:
        message = client.messages.create(model="fast", max_tokens=50, messages=USER_Q)
        with client.messages.stream(model=OPENAI_MODEL, max_tokens=50, messages=USER_Q) as s:
            final = s.get_final_message()
    assert message.model == "gpt-4o-mini"
    assert final.model == "gpt-4o"


# --------------------------------------------------------------------------- request knobs


def test_chat_on_anthropic_tool_choice_mapping(stack: Stack) -> None:
    named: Any = {"type": "function", "function": {"name": "search"}}
    with stack.openai_client() as client:
        client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=USER_Q, tools=OPENAI_TOOLS, tool_choice="required"
        )
        assert _anthropic_sent(stack)["tool_choice"] == {"type": "any"}
        client.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=USER_Q, tools=OPENAI_TOOLS, tool_choice=named
        )
        assert _anthropic_sent(stack)["tool_choice"] == {"type": "tool", "name": "search"}
        client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=USER_Q,
            tools=OPENAI_TOOLS,
            tool_choice="auto",
            parallel_tool_calls=False,
        )
        assert _anthropic_sent(stack)["tool_choice"] == {
            "type": "auto",
            "disable_parallel_tool_use": True,
        }


def test_chat_on_anthropic_stop_and_user(stack: Stack) -> None:
    with stack.openai_client() as client:
        client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=USER_Q,
            stop=["END", "STOP"],
            user="tester",
            max_completion_tokens=33,
            extra_body={"guardrails": [], "mcp_servers": [], "max_tool_iterations": 2},
        )
    sent = _anthropic_sent(stack)
    assert sent["stop_sequences"] == ["END", "STOP"]
    assert sent["metadata"] == {"user_id": "tester"}
    assert sent["max_tokens"] == 33
    for field in ("guardrails", "mcp_servers", "max_tool_iterations", "stop", "user", "n"):
        assert field not in sent


def test_chat_on_anthropic_cached_prompt_usage(stack: Stack) -> None:
    system: Any = [
        {"type": "text", "text": "long cached preamble", "cache_control": {"type": "ephemeral"}}
    ]
    messages: Any = [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]
    with stack.openai_client() as client:
        reply = client.chat.completions.create(model=ANTHROPIC_MODEL, messages=messages)
        with client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            streamed = [chunk.usage for chunk in stream if chunk.usage is not None]
    sent_system = _anthropic_sent(stack)["system"]
    assert isinstance(sent_system, list)
    assert sent_system[0]["cache_control"] == {"type": "ephemeral"}
    # Anthropic's input_tokens (4 words) excludes the 3 cache reads; OpenAI's prompt_tokens
    # includes them and names them in prompt_tokens_details.cached_tokens.
    for usage in (reply.usage, *streamed):
        assert usage is not None
        assert usage.prompt_tokens == 4 + c.CACHE_READ_TOKENS
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == c.CACHE_READ_TOKENS
        assert usage.completion_tokens == 2
    assert len(streamed) == 1


def test_messages_on_openai_image_and_knobs(stack: Stack) -> None:
    content: Any = [
        {"type": "text", "text": "what is this"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64},
        },
    ]
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=123,
            stop_sequences=["END"],
            metadata={"user_id": "tester"},
            messages=[{"role": "user", "content": content}],
        )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: what is this"
    sent = _openai_sent(stack)
    user = sent["messages"][-1]
    assert user["role"] == "user"
    assert {"type": "text", "text": "what is this"} in user["content"]
    images = [p for p in user["content"] if p.get("type") == "image_url"]
    assert [p["image_url"]["url"] for p in images] == [f"data:image/png;base64,{PNG_BASE64}"]
    assert sent["stop"] == ["END"]
    assert sent["user"] == "tester"
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 123


def test_messages_on_openai_tool_choice_mapping(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=50,
            tools=ANTHROPIC_TOOLS,
            tool_choice={"type": "any"},
            messages=USER_Q,
        )
        assert _openai_sent(stack)["tool_choice"] == "required"
        client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=50,
            tools=ANTHROPIC_TOOLS,
            tool_choice={"type": "tool", "name": "search", "disable_parallel_tool_use": True},
            messages=USER_Q,
        )
    sent = _openai_sent(stack)
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "search"}}
    assert sent["parallel_tool_calls"] is False


def test_messages_on_openai_cached_prompt_usage(stack: Stack) -> None:
    canned = {
        "id": "chatcmpl-cached",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "total_tokens": 11,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }
    stack.openai_fake.fail_next(200, body=canned)
    with stack.anthropic_client() as client:
        message = client.messages.create(model=OPENAI_MODEL, max_tokens=50, messages=USER_Q)
    # Anthropic's input_tokens excludes cache reads, which are reported on their own.
    assert message.usage.input_tokens == 6
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.output_tokens == 1


# --------------------------------------------------------------------------- errors sent as 200


def test_messages_on_openai_error_body_with_200_is_a_502(stack: Stack) -> None:
    user = "error-with-200"
    key = str(create_key(stack.base_url, user_id=user)["key"])
    error = {"message": "The server had an error", "type": "server_error", "code": None}
    stack.openai_fake.fail_next(200, body={"error": error})
    with (
        stack.anthropic_client(api_key=key) as client,
        pytest.raises(anthropic.InternalServerError) as caught,
    ):
        client.messages.create(model=OPENAI_MODEL, max_tokens=50, messages=USER_Q)
    assert caught.value.status_code == 502
    assert "The server had an error" in str(caught.value)
    [row] = usage_rows(stack.base_url, user)
    assert (row["status"], row["status_code"], row["cost"]) == ("error", 502, 0)


def test_chat_on_anthropic_error_body_with_200_is_a_502(stack: Stack) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    stack.anthropic_fake.fail_next(200, body=body)
    with stack.openai_client() as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=ANTHROPIC_MODEL, messages=USER_Q)
    assert caught.value.status_code == 502
    assert "Overloaded" in str(caught.value)
    stack.anthropic_fake.fail_next(200, body=body)
    with stack.openai_client() as client, pytest.raises(openai.InternalServerError):
        client.responses.create(model=ANTHROPIC_MODEL, input="hi")


# --------------------------------------------------------------------------- structured outputs


class City(BaseModel):
    name: str
    population: int
    capital: bool


class Trip(BaseModel):
    destination: City
    stops: list[str]


def test_chat_on_anthropic_parse_with_a_pydantic_model(stack: Stack) -> None:
    with stack.openai_client() as client:
        completion = client.chat.completions.parse(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": "plan a trip"}],
            response_format=Trip,
        )
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls in (None, [])
    assert choice.message.parsed == Trip(
        destination=City(name="plan a trip", population=1, capital=True), stops=["plan a trip"]
    )
    sent = _anthropic_sent(stack)
    assert sent["tool_choice"] == {"type": "tool", "name": "Trip"}
    [tool] = sent["tools"]
    assert tool["input_schema"]["required"] == ["destination", "stops"]


def test_chat_on_anthropic_streamed_structured_output(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.chat.completions.stream(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": "Oslo"}],
            response_format=City,
        ) as stream,
    ):
        completion = stream.get_final_completion()
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.parsed == City(name="Oslo", population=1, capital=True)


def test_responses_on_anthropic_parse_with_a_pydantic_model(stack: Stack) -> None:
    with stack.openai_client() as client:
        response = client.responses.parse(model=ANTHROPIC_MODEL, input="Oslo", text_format=City)
        with client.responses.stream(
            model=ANTHROPIC_MODEL, input="Oslo", text_format=City
        ) as stream:
            streamed = stream.get_final_response()
    expected = City(name="Oslo", population=1, capital=True)
    assert response.output_parsed == expected
    assert streamed.output_parsed == expected


def test_chat_on_anthropic_structured_output_with_tools_is_refused(stack: Stack) -> None:
    with stack.openai_client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=ANTHROPIC_MODEL,
            messages=USER_Q,
            tools=OPENAI_TOOLS,
            response_format={"type": "json_object"},
        )
    assert "response_format together with tools is not supported" in caught.value.message
    assert stack.anthropic_fake.requests == []
