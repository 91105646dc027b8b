"""The other generation surfaces through the real gateway.

``/v1/messages`` relayed to an Anthropic upstream (headers, bare model, instance key),
``/v1/messages/count_tokens`` answered locally, ``/v1/responses`` relayed to an
OpenAI upstream (JSON and events), ``/v1/embeddings``, and the model listing.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import openai
import orjson
import pytest

from tests.fakes import content as c
from tests.integration.conftest import MASTER_KEY, Stack

ANTHROPIC_MODEL = "anthropic:claude-sonnet-4-5"
ANTHROPIC_TOOLS: Any = [
    {
        "name": "search",
        "description": "Search the web",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]


def _anthropic_sent(stack: Stack) -> dict[str, Any]:
    request = stack.anthropic_fake.last_request
    assert request.path == "/v1/messages"
    assert isinstance(request.json, dict)
    return request.json


# --------------------------------------------------------------------------- /v1/messages


def test_messages_passthrough_non_stream(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=50,
            system="be nice",
            messages=[{"role": "user", "content": "good morning"}],
            metadata={"user_id": "tester"},
            extra_body={"temperature": 0.3, "top_k": 5},
        )
    assert message.type == "message"
    assert message.id.startswith("msg_fake")
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: good morning"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 3)
    request = stack.anthropic_fake.last_request
    assert request.headers["x-api-key"] == stack.anthropic_fake.api_key
    assert all(MASTER_KEY not in value for value in request.headers.values())
    assert request.headers.get("anthropic-version")
    sent = _anthropic_sent(stack)
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["system"] == "be nice"
    assert sent["messages"] == [{"role": "user", "content": "good morning"}]
    assert sent["max_tokens"] == 50
    assert sent["temperature"] == 0.3
    assert sent["top_k"] == 5
    assert sent["metadata"] == {"user_id": "tester"}
    assert stack.openai_fake.requests == []


def test_messages_passthrough_via_alias(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        message = client.messages.create(
            model="claude", max_tokens=50, messages=[{"role": "user", "content": "alias"}]
        )
    assert message.content[0].type == "text" and message.content[0].text == "echo: alias"
    assert _anthropic_sent(stack)["model"] == "claude-sonnet-4-5"


def test_messages_passthrough_stream(stack: Stack) -> None:
    with (
        stack.anthropic_client() as client,
        client.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=50,
            messages=[{"role": "user", "content": "one two"}],
            stream=True,
        ) as stream,
    ):
        events = list(stream)
    types = [event.type for event in events]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    assert types.count("message_stop") == 1
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "echo: one two"
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.type == "message_delta"
    assert delta.usage.output_tokens == 3
    sent = _anthropic_sent(stack)
    assert sent["stream"] is True
    assert sent["model"] == "claude-sonnet-4-5"
    assert stack.anthropic_fake.last_request.headers["x-api-key"] == stack.anthropic_fake.api_key


def test_messages_passthrough_stream_tool_use(stack: Stack) -> None:
    with (
        stack.anthropic_client() as client,
        client.messages.stream(
            model=ANTHROPIC_MODEL,
            max_tokens=50,
            tools=ANTHROPIC_TOOLS,
            messages=[{"role": "user", "content": "lookup pi"}],
        ) as stream,
    ):
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use"
    assert block.id == "toolu_fake_1"
    assert block.input == {"query": "lookup pi"}
    assert _anthropic_sent(stack)["tools"] == ANTHROPIC_TOOLS


def test_anthropic_beta_header_forwarded(stack: Stack) -> None:
    beta = "prompt-caching-2024-07-31"
    with stack.anthropic_client() as client:
        client.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=20,
            messages=[{"role": "user", "content": "beta"}],
            extra_headers={"anthropic-beta": beta},
        )
        assert stack.anthropic_fake.last_request.headers.get("anthropic-beta") == beta
        with client.messages.stream(
            model=ANTHROPIC_MODEL,
            max_tokens=20,
            messages=[{"role": "user", "content": "beta stream"}],
            extra_headers={"anthropic-beta": beta},
        ) as stream:
            stream.get_final_message()
    assert stack.anthropic_fake.last_request.headers.get("anthropic-beta") == beta


def test_messages_without_beta_header_sends_none(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )
    assert "anthropic-beta" not in stack.anthropic_fake.last_request.headers


def test_count_tokens_is_local(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        counted = client.messages.count_tokens(
            model=ANTHROPIC_MODEL,
            system="you are a helpful assistant",
            messages=[{"role": "user", "content": "how many tokens is this sentence?"}],
        )
        on_openai = client.messages.count_tokens(
            model="openai:gpt-4o", messages=[{"role": "user", "content": "hello"}]
        )
        with_tools = client.messages.count_tokens(
            model=ANTHROPIC_MODEL,
            tools=ANTHROPIC_TOOLS,
            messages=[{"role": "user", "content": "how many tokens is this sentence?"}],
        )
    assert counted.input_tokens > 0
    # gpt-4o's encoding is known and shipped: "hello" is one o200k token, plus the chat
    # framing OpenAI bills (3 and the role per message, 3 priming the reply).
    assert on_openai.input_tokens == 8
    assert with_tools.input_tokens > 0
    assert stack.anthropic_fake.requests == []
    assert stack.openai_fake.requests == []


def test_count_tokens_grows_with_input(stack: Stack) -> None:
    with stack.anthropic_client() as client:
        short = client.messages.count_tokens(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
        long = client.messages.count_tokens(
            model=ANTHROPIC_MODEL,
            messages=[{"role": "user", "content": "hi " * 400}],
        )
    assert long.input_tokens > short.input_tokens > 0
    assert stack.anthropic_fake.requests == []


# --------------------------------------------------------------------------- /v1/responses


def test_responses_create(stack: Stack) -> None:
    with stack.openai_client() as client:
        response = client.responses.create(
            model="openai:gpt-4o", input="ping pong", instructions="be terse"
        )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "echo: ping pong"
    assert response.usage is not None
    assert response.usage.input_tokens == 4
    assert response.usage.output_tokens == 3
    request = stack.openai_fake.last_request
    assert request.path == "/v1/responses"
    assert request.headers["authorization"] == f"Bearer {stack.openai_fake.api_key}"
    assert request.json is not None
    assert request.json["model"] == "gpt-4o"
    assert request.json["input"] == "ping pong"
    assert request.json["instructions"] == "be terse"


def test_responses_stream_events(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.responses.create(model="openai:gpt-4o", input="ping", stream=True) as stream,
    ):
        events = list(stream)
    types = [event.type for event in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert types.count("response.completed") == 1
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: ping"
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 2
    assert stack.openai_fake.last_request.json is not None
    assert stack.openai_fake.last_request.json["stream"] is True


def test_responses_stream_helper_final_response(stack: Stack) -> None:
    with (
        stack.openai_client() as client,
        client.responses.stream(model="openai:gpt-4o", input="final answer") as stream,
    ):
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: final answer"
    assert final.output_text == "echo: final answer"
    assert final.status == "completed"


def test_responses_stream_helper_gets_the_error_event_of_a_cut_native_stream(
    stack: Stack,
) -> None:
    # The gateway's error event continues the upstream's numbering; without a
    # sequence_number the SDK helper raised RuntimeError instead of handing it over.
    stack.openai_fake.drop_stream_next(after_events=3)
    with (
        stack.openai_client() as client,
        client.responses.stream(model="openai:gpt-4o", input="ping") as stream,
    ):
        events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type == "error"
    assert [event.sequence_number for event in events] == list(range(len(events)))


def test_responses_function_call(stack: Stack) -> None:
    tools: Any = [
        {
            "type": "function",
            "name": "search",
            "description": "Search the web",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        }
    ]
    with stack.openai_client() as client:
        response = client.responses.create(model="openai:gpt-4o", input="tides", tools=tools)
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function_call"
    assert call.call_id == "call_fake_1"
    assert orjson.loads(call.arguments) == {"query": "tides"}


# --------------------------------------------------------------------------- /v1/embeddings


def test_embeddings_single_input(stack: Stack) -> None:
    with stack.openai_client() as client:
        result = client.embeddings.create(
            model="openai:text-embedding-3-small", input="the quick brown fox"
        )
    assert len(result.data) == 1
    assert result.data[0].index == 0
    assert result.data[0].embedding == pytest.approx(
        c.embedding_vector("the quick brown fox"), abs=1e-6
    )
    assert result.usage.prompt_tokens == 4
    assert result.usage.total_tokens == 4
    sent = stack.openai_fake.last_request
    assert sent.path == "/v1/embeddings"
    assert sent.json is not None and sent.json["model"] == "text-embedding-3-small"


def test_embeddings_list_input(stack: Stack) -> None:
    inputs = ["alpha beta", "gamma", "delta epsilon zeta"]
    with stack.openai_client() as client:
        result = client.embeddings.create(
            model="openai:text-embedding-3-small", input=inputs, encoding_format="float"
        )
    assert [item.index for item in result.data] == [0, 1, 2]
    for item, text in zip(result.data, inputs, strict=True):
        assert item.embedding == pytest.approx(c.embedding_vector(text), abs=1e-6)
    assert result.usage.prompt_tokens == 6
    sent = stack.openai_fake.last_request.json
    assert sent is not None and sent["input"] == inputs


def test_embeddings_base64_default_of_sdk(stack: Stack) -> None:
    # The SDK asks for base64 by default and decodes it; the gateway must relay it intact.
    with stack.openai_client() as client:
        result = client.embeddings.create(model="openai:text-embedding-3-small", input="hi")
    assert result.data[0].embedding == pytest.approx(c.embedding_vector("hi"), abs=1e-6)


# --------------------------------------------------------------------------- /v1/models


def test_models_list(stack: Stack) -> None:
    with stack.openai_client() as client:
        models = list(client.models.list())
    ids = {model.id for model in models}
    assert {"openai:gpt-4o-mini", "openai:gpt-4o", "anthropic:claude-sonnet-4-5"} <= ids
    assert {"fast", "claude"} <= ids
    for model in models:
        assert model.object == "model"
        assert isinstance(model.created, int)
        assert isinstance(model.owned_by, str)
    assert stack.openai_fake.requests == []


def test_models_list_raw_shape(stack: Stack) -> None:
    request = urllib.request.Request(
        stack.base_url + "/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = orjson.loads(response.read())
    assert body["object"] == "list"
    assert isinstance(body["data"], list) and body["data"]


def test_models_retrieve(stack: Stack) -> None:
    with stack.openai_client() as client:
        model = client.models.retrieve("openai:gpt-4o")
        alias = client.models.retrieve("fast")
        # The slash form requests may use names the same model.
        slashed = client.models.retrieve("openai/gpt-4o")
    assert model.id == slashed.id == "openai:gpt-4o"
    assert model.object == "model"
    assert alias.id == "fast"
    # Known prices ride along (genai-prices here); a made-up local model has none.
    pricing = (model.model_extra or {}).get("pricing")
    assert pricing is not None
    assert pricing["input_price_per_million"] > 0 and pricing["output_price_per_million"] > 0
    with stack.openai_client() as client:
        priced = client.models.retrieve("local:local-model")
    assert (priced.model_extra or {})["pricing"] == {
        "input_price_per_million": 1.0,
        "output_price_per_million": 2.0,
    }


def test_models_retrieve_unknown(stack: Stack) -> None:
    with stack.openai_client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("openai:no-such-model")
    body = orjson.loads(caught.value.response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_models_require_auth(stack: Stack) -> None:
    with (
        stack.openai_client(api_key="sk-not-the-key") as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.models.list()
