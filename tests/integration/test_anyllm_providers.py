"""Providers reached through any-llm, end to end: official SDK → gateway → provider SDK → fake.

Each fake speaks its provider's real wire format (Gemini REST and SSE, Bedrock Converse with
AWS event-stream framing, Cohere v2 SSE, Ollama NDJSON, Mistral, Hugging Face's
OpenAI-format router, Vertex AI's Gemini and Claude publishers behind a Google OAuth token
endpoint, Microsoft Foundry's Claude and model inference endpoints, Liner's agents, a
SageMaker chat endpoint), and the provider SDKs inside
any-llm are pointed at them through their base-URL options only (Vertex signs in with a
service-account file whose ``token_uri`` is the fake). Every call must answer OpenAI's
shapes, and leave one usage row with the provider's token counts (Liner reports none).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import anthropic
import openai
import orjson
import pytest

from tests.fakes.azure_ai_upstream import FakeAzureAIInference, FakeFoundryClaude
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.cohere_upstream import FakeCohere
from tests.fakes.gemini_upstream import CACHED_TOKENS, THOUGHT, THOUGHTS_TOKENS, FakeGemini
from tests.fakes.liner_upstream import REFERENCE, FakeLiner
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_like_upstreams import FakeMistral
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.sagemaker_upstream import FakeSageMaker
from tests.fakes.vertex_upstream import JWT_GRANT, PROJECT, FakeVertex
from tests.integration.conftest import MASTER_KEY, create_key, usage_rows
from tests.integration.gateway_process import GatewayProcess

PROMPT = "hi there"
REPLY = "echo: hi there"


@dataclass(frozen=True)
class Expected:
    """What the fake charges for PROMPT, as the gateway must report it."""

    model: str
    prompt: int
    completion: int
    cached: int = 0
    reasoning: int = 0
    stream_finish: bool = True
    """Whether a stream says why it stopped (any-llm loses it for some providers)."""


EXPECTED = {
    # Gemini counts thinking tokens apart; OpenAI's completion_tokens include them.
    "gemini": Expected("gemini-2.0-flash", 2, 3 + THOUGHTS_TOKENS, CACHED_TOKENS, THOUGHTS_TOKENS),
    # Bedrock's inputTokens exclude cache reads; the gateway's prompt_tokens include them.
    "bedrock": Expected("anthropic.claude-3-haiku-20240307-v1:0", 2 + 2, 3, 2),
    "mistral": Expected("mistral-small-latest", 2, 3),
    "cohere": Expected("command-r-plus", 2, 3, 1),
    "ollama": Expected("llama3.2", 2, 3),
    "vertexai": Expected(
        "gemini-2.0-flash", 2, 3 + THOUGHTS_TOKENS, CACHED_TOKENS, THOUGHTS_TOKENS
    ),
    "vertexaianthropic": Expected("claude-sonnet-4-5@20250929", 2, 3),
    "huggingface": Expected("meta-llama/Llama-3.1-8B-Instruct", 2, 3),
    "azureanthropic": Expected("claude-sonnet-4-5", 2, 3),
    # any-llm skips a chunk of an Azure AI Inference stream whose delta is empty, and so the
    # last one, which carries the finish reason with an empty delta as OpenAI's does.
    "azure": Expected("Mistral-Large-2411", 2, 3, stream_finish=False),
}


@dataclass
class Upstreams:
    gateway: GatewayProcess
    gemini: FakeGemini
    bedrock: FakeBedrock
    vertex: FakeVertex
    inference: FakeAzureAIInference
    clients: ExitStack

    @property
    def base_url(self) -> str:
        return self.gateway.base_url


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    with ExitStack() as stack:
        gemini = stack.enter_context(FakeGemini())
        bedrock = stack.enter_context(FakeBedrock())
        mistral = stack.enter_context(FakeMistral())
        cohere = stack.enter_context(FakeCohere())
        ollama = stack.enter_context(FakeOllama())
        vertex = stack.enter_context(FakeVertex())
        foundry = stack.enter_context(FakeFoundryClaude())
        inference = stack.enter_context(FakeAzureAIInference())
        liner = stack.enter_context(FakeLiner())
        sagemaker = stack.enter_context(FakeSageMaker())
        # Hugging Face's router speaks OpenAI's chat format under /v1.
        hf_router = stack.enter_context(FakeOpenAI(api_key="hf_fakeRouterToken0123456789"))
        workdir: Path = tmp_path_factory.mktemp("anyllm")
        credentials = workdir / "service-account.json"
        credentials.write_bytes(orjson.dumps(vertex.service_account_info()))
        config = {
            "master_key": MASTER_KEY,
            "require_pricing": False,
            "pricing": {"liner:quick-answer": {"price_per_request": "0.01"}},
            "providers": {
                "gemini": {"api_key": gemini.api_key, "api_base": gemini.base_url},
                "bedrock": bedrock.gateway_instance(),
                "mistral": {"api_key": mistral.api_key, "api_base": mistral.base_url},
                "cohere": {"api_key": cohere.api_key, "api_base": cohere.base_url},
                "ollama": {"api_base": ollama.base_url},
                "huggingface": {"api_key": hf_router.api_key, "api_base": hf_router.base_url},
                "vertexai": {
                    "api_base": vertex.base_url,
                    "project": PROJECT,
                    "location": "us-central1",
                },
                "vertexaianthropic": {
                    "api_base": vertex.base_url + "/v1",
                    "project_id": PROJECT,
                    "region": "us-east5",
                },
                "azureanthropic": {
                    "api_key": foundry.api_key,
                    "api_base": foundry.base_url + "/anthropic",
                },
                "azure": {"api_key": inference.api_key, "api_base": inference.base_url + "/models"},
                "liner": {"api_key": liner.api_key, "api_base": liner.base_url + "/api/v1/agents"},
                "sagemaker": {"api_base": sagemaker.base_url, "region_name": "us-east-1"},
                # No key in the config: google-genai's own GEMINI_API_KEY variable supplies it.
                "gemini_env": {"provider_type": "gemini", "api_base": gemini.base_url},
                "gemini_slow": {
                    "provider_type": "gemini",
                    "api_key": gemini.api_key,
                    "api_base": gemini.base_url,
                    "timeout": 1.0,
                },
                "gemini_badkey": {
                    "provider_type": "gemini",
                    "api_key": "AIzaWrongKeyWrongKeyWrongKey0000",
                    "api_base": gemini.base_url,
                },
            },
        }
        env = {
            "GEMINI_API_KEY": gemini.api_key,
            "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
            # any-llm accepts SageMaker only with credentials in boto3's default chain.
            "AWS_ACCESS_KEY_ID": sagemaker.api_key,
            "AWS_SECRET_ACCESS_KEY": sagemaker.secret_key,
        }
        gateway = GatewayProcess(config, workdir, env=env)
        gateway.start()
        stack.callback(gateway.stop)
        clients = stack.enter_context(ExitStack())
        yield Upstreams(gateway, gemini, bedrock, vertex, inference, clients)


def _openai(upstreams: Upstreams, user_id: str) -> openai.OpenAI:
    key = create_key(upstreams.base_url, user_id=user_id)
    client = openai.OpenAI(
        base_url=upstreams.base_url + "/v1", api_key=str(key["key"]), max_retries=0, timeout=30
    )
    return upstreams.clients.enter_context(client)


def _assert_row(upstreams: Upstreams, user_id: str, instance: str, expected: Expected) -> None:
    [row] = usage_rows(upstreams.base_url, user_id)
    assert row["status_code"] == 200
    assert row["provider"] == instance
    assert row["model"] == expected.model
    assert row["prompt_tokens"] == expected.prompt
    assert row["completion_tokens"] == expected.completion
    assert row["cache_read_tokens"] == expected.cached
    assert row["reasoning_tokens"] == expected.reasoning


@pytest.mark.parametrize("instance", sorted(EXPECTED))
def test_chat(upstreams: Upstreams, instance: str) -> None:
    expected = EXPECTED[instance]
    user_id = f"anyllm-chat-{instance}"
    client = _openai(upstreams, user_id)
    reply = client.chat.completions.create(
        model=f"{instance}:{expected.model}", messages=[{"role": "user", "content": PROMPT}]
    )
    assert reply.choices[0].message.content == REPLY
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == expected.prompt
    assert reply.usage.completion_tokens == expected.completion
    _assert_row(upstreams, user_id, instance, expected)


def _stream(
    upstreams: Upstreams, user_id: str, instance: str, **options: Any
) -> list[openai.types.chat.ChatCompletionChunk]:
    client = _openai(upstreams, user_id)
    return list(
        client.chat.completions.create(
            model=f"{instance}:{EXPECTED[instance].model}",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            **options,
        )
    )


@pytest.mark.parametrize("instance", sorted(EXPECTED))
def test_stream_reports_usage_when_asked(upstreams: Upstreams, instance: str) -> None:
    expected = EXPECTED[instance]
    user_id = f"anyllm-stream-{instance}"
    chunks = _stream(upstreams, user_id, instance, stream_options={"include_usage": True})
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == REPLY
    # Some providers send a last, empty delta after the finish reason (Bedrock's metadata).
    reasons = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert ("stop" in reasons) == expected.stream_finish
    usage_chunks = [ch for ch in chunks if ch.usage is not None]
    assert usage_chunks == [chunks[-1]]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == expected.prompt
    assert usage.completion_tokens == expected.completion
    if expected.cached:
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == expected.cached
    if expected.reasoning:
        assert usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == expected.reasoning
    _assert_row(upstreams, user_id, instance, expected)


@pytest.mark.parametrize("instance", ["gemini", "bedrock"])
def test_stream_without_include_usage_has_no_usage_chunk(
    upstreams: Upstreams, instance: str
) -> None:
    user_id = f"anyllm-stream-nousage-{instance}"
    chunks = _stream(upstreams, user_id, instance)
    assert all(ch.usage is None and ch.choices for ch in chunks)
    # The client did not ask for usage, but the gateway still bills it exactly.
    _assert_row(upstreams, user_id, instance, EXPECTED[instance])


def test_native_key_variable_serves_an_instance_without_a_key(upstreams: Upstreams) -> None:
    client = _openai(upstreams, "anyllm-env-key")
    reply = client.chat.completions.create(
        model="gemini_env:gemini-2.0-flash", messages=[{"role": "user", "content": PROMPT}]
    )
    assert reply.choices[0].message.content == REPLY
    assert upstreams.gemini.last_request.headers["x-goog-api-key"] == upstreams.gemini.api_key


def test_system_prompt_reaches_gemini_as_system_instruction(upstreams: Upstreams) -> None:
    client = _openai(upstreams, "anyllm-system")
    client.chat.completions.create(
        model="gemini:gemini-2.0-flash",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": PROMPT},
        ],
        temperature=0.25,
    )
    sent = upstreams.gemini.last_request.json_object()
    assert sent["systemInstruction"]["parts"] == [{"text": "be brief"}]
    assert sent["contents"] == [{"role": "user", "parts": [{"text": PROMPT}]}]
    assert sent["generationConfig"]["temperature"] == 0.25


def test_messages_surface_is_translated_for_gemini(upstreams: Upstreams) -> None:
    key = create_key(upstreams.base_url, user_id="anyllm-messages")
    client = upstreams.clients.enter_context(
        anthropic.Anthropic(
            base_url=upstreams.base_url, api_key=str(key["key"]), max_retries=0, timeout=30
        )
    )
    message = client.messages.create(
        model="gemini:gemini-2.0-flash",
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    gemini = EXPECTED["gemini"]
    # Anthropic's input_tokens exclude cache reads, which are reported beside them.
    assert message.usage.input_tokens == gemini.prompt - gemini.cached
    assert message.usage.cache_read_input_tokens == gemini.cached
    assert message.usage.output_tokens == gemini.completion
    with client.messages.stream(
        model="gemini:gemini-2.0-flash",
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == REPLY
    assert final.usage.output_tokens == gemini.completion


def test_responses_surface_is_bridged_for_gemini(upstreams: Upstreams) -> None:
    client = _openai(upstreams, "anyllm-responses")
    gemini = EXPECTED["gemini"]
    reply = client.responses.create(model="gemini:gemini-2.0-flash", input=PROMPT)
    assert reply.status == "completed"
    assert reply.output_text == REPLY
    assert reply.usage is not None
    assert reply.usage.input_tokens == gemini.prompt
    assert reply.usage.output_tokens == gemini.completion
    with client.responses.stream(model="gemini:gemini-2.0-flash", input=PROMPT) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_response()
    assert events[0] == "response.created"
    assert events[-1] == "response.completed"
    assert final.output_text == REPLY


def test_rejected_credentials_are_a_502_without_the_key(upstreams: Upstreams) -> None:
    client = _openai(upstreams, "anyllm-badkey")
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="gemini_badkey:gemini-2.0-flash",
            messages=[{"role": "user", "content": PROMPT}],
        )
    assert caught.value.status_code == 502
    assert "WrongKey" not in caught.value.response.text
    assert "upstream_auth" in caught.value.response.text


@pytest.mark.parametrize(
    ("status", "expected_status"), [(429, 429), (400, 400), (500, 502), (503, 502)]
)
def test_upstream_failures_map_to_the_gateway_statuses(
    upstreams: Upstreams, status: int, expected_status: int
) -> None:
    upstreams.gemini.fail_next(status)
    client = _openai(upstreams, f"anyllm-fail-{status}")
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="gemini:gemini-2.0-flash", messages=[{"role": "user", "content": PROMPT}]
        )
    assert caught.value.status_code == expected_status
    [row] = usage_rows(upstreams.base_url, f"anyllm-fail-{status}")
    assert row["status_code"] == expected_status


def test_missing_model_is_a_404(upstreams: Upstreams) -> None:
    client = _openai(upstreams, "anyllm-missing")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="bedrock:missing-model", messages=[{"role": "user", "content": PROMPT}]
        )


def test_a_refused_stream_keeps_its_status(upstreams: Upstreams) -> None:
    upstreams.gemini.fail_next(429)
    client = _openai(upstreams, "anyllm-stream-429")
    with pytest.raises(openai.RateLimitError):
        list(
            client.chat.completions.create(
                model="gemini:gemini-2.0-flash",
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
        )


def test_embeddings_through_gemini(upstreams: Upstreams) -> None:
    client = _openai(upstreams, "anyllm-embed")
    result = client.embeddings.create(model="gemini:text-embedding-004", input=["a b", "c"])
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8


@pytest.mark.parametrize("stream", [False, True])
def test_a_slow_provider_times_out_with_504(upstreams: Upstreams, stream: bool) -> None:
    upstreams.gemini.delay_next(5)
    client = _openai(upstreams, f"anyllm-slow-{stream}")
    started = time.monotonic()
    # A stream that times out before its first chunk is refused with the status itself.
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="gemini_slow:gemini-2.0-flash",
            messages=[{"role": "user", "content": PROMPT}],
            stream=stream,
        )
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("instance", ["bedrock", "azure"])
def test_throttling_is_answered_at_once_without_sdk_retries(
    upstreams: Upstreams, instance: str
) -> None:
    """boto3 and azure-core retry on their own unless told not to, which any-llm cannot."""
    fake = {"bedrock": upstreams.bedrock, "azure": upstreams.inference}[instance]
    fake.reset()
    fake.fail_next(429, times=5)
    client = _openai(upstreams, f"anyllm-{instance}-429")
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model=f"{instance}:{EXPECTED[instance].model}",
            messages=[{"role": "user", "content": PROMPT}],
        )
    assert len(fake.requests) == 1
    fake.reset()


@pytest.mark.parametrize("instance", ["cohere", "mistral"])
def test_master_key_user_field_bills_but_is_not_sent_upstream(
    upstreams: Upstreams, instance: str
) -> None:
    """Cohere's and Mistral's SDKs reject OpenAI's ``user``; it names whom the gateway bills."""
    expected = EXPECTED[instance]
    user_id = f"anyllm-master-{instance}"
    with openai.OpenAI(
        base_url=upstreams.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30
    ) as client:
        reply = client.chat.completions.create(
            model=f"{instance}:{expected.model}",
            messages=[{"role": "user", "content": PROMPT}],
            user=user_id,
            max_completion_tokens=50,
        )
    assert reply.choices[0].message.content == REPLY
    _assert_row(upstreams, user_id, instance, expected)


def test_gemini_thoughts_arrive_as_reasoning_and_thinking_blocks(upstreams: Upstreams) -> None:
    client = _openai(upstreams, "anyllm-thoughts")
    reply = client.chat.completions.create(
        model="gemini:gemini-2.5-thinking", messages=[{"role": "user", "content": PROMPT}]
    )
    message = reply.choices[0].message
    assert message.content == REPLY
    assert (message.model_extra or {}).get("reasoning") == THOUGHT
    # Under the name Chat clients get from every other provider, too.
    assert (message.model_extra or {}).get("reasoning_content") == THOUGHT
    key = create_key(upstreams.base_url, user_id="anyllm-thoughts")
    anthropic_client = upstreams.clients.enter_context(
        anthropic.Anthropic(base_url=upstreams.base_url, api_key=str(key["key"]), max_retries=0)
    )
    answer = anthropic_client.messages.create(
        model="gemini:gemini-2.5-thinking",
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert [block.type for block in answer.content] == ["thinking", "text"]
    assert answer.content[0].thinking == THOUGHT  # type: ignore[union-attr]


def test_vertex_signs_in_with_the_service_account(upstreams: Upstreams) -> None:
    vertex = upstreams.vertex
    client = _openai(upstreams, "anyllm-vertex-auth")
    client.chat.completions.create(
        model="vertexai:gemini-2.0-flash", messages=[{"role": "user", "content": PROMPT}]
    )
    sent = vertex.last_request
    assert sent.path == (
        f"/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/models/"
        "gemini-2.0-flash:generateContent"
    )
    # The bearer token is one the fake issued for a JWT signed with the account's key.
    assert sent.headers["authorization"].removeprefix("Bearer ") in vertex.issued
    grants = [r for r in vertex.requests if r.path == "/token"]
    assert grants
    assert f"grant_type={urllib.parse.quote(JWT_GRANT, safe='')}" in grants[0].body.decode()


def test_embeddings_through_vertex(upstreams: Upstreams) -> None:
    client = _openai(upstreams, "anyllm-vertex-embed")
    result = client.embeddings.create(model="vertexai:text-embedding-005", input=["a b", "c"])
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    assert upstreams.vertex.last_request.path.endswith("/text-embedding-005:predict")


def test_gemini_streamed_thoughts_arrive_as_reasoning_and_a_thinking_block(
    upstreams: Upstreams,
) -> None:
    client = _openai(upstreams, "anyllm-streamed-thoughts")
    with client.chat.completions.create(
        model="gemini:gemini-2.5-thinking",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
    ) as stream:
        deltas = [chunk.choices[0].delta for chunk in stream if chunk.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert reasoning == THOUGHT
    key = create_key(upstreams.base_url, user_id="anyllm-streamed-thoughts")
    anthropic_client = upstreams.clients.enter_context(
        anthropic.Anthropic(base_url=upstreams.base_url, api_key=str(key["key"]), max_retries=0)
    )
    with anthropic_client.messages.stream(
        model="gemini:gemini-2.5-thinking",
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
    ) as message_stream:
        answer = message_stream.get_final_message()
    assert [block.type for block in answer.content] == ["thinking", "text"]
    assert answer.content[0].thinking == THOUGHT  # type: ignore[union-attr]
    details = answer.usage.output_tokens_details
    assert details is not None and details.thinking_tokens == THOUGHTS_TOKENS


@pytest.mark.parametrize("encoding", [openai.omit, "float"], ids=["default", "float"])
def test_embeddings_through_azure_ai_inference(
    upstreams: Upstreams, encoding: Literal["float"] | openai.Omit
) -> None:
    """Unless told otherwise, OpenAI's clients ask for base64 and decode it themselves."""
    label = "float" if encoding == "float" else "default"
    client = _openai(upstreams, f"anyllm-azure-embed-{label}")
    result = client.embeddings.create(
        model="azure:Cohere-embed-v3-english", input=["a b", "c"], encoding_format=encoding
    )
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    assert upstreams.inference.last_request.path == "/models/embeddings"


def test_liner_answers_with_its_references_as_citations(upstreams: Upstreams) -> None:
    user_id = "anyllm-liner"
    client = _openai(upstreams, user_id)
    # Liner has no system role; any-llm sends instructions as a leading user turn.
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": PROMPT},
    ]
    reply = client.chat.completions.create(model="liner:quick-answer", messages=messages)
    message = reply.choices[0].message
    assert message.content == REPLY
    assert reply.choices[0].finish_reason == "stop"
    [citation] = (message.model_extra or {})["citations"]
    assert citation["url"] == REFERENCE["url"]
    assert citation["favicon"] == REFERENCE["faviconUrl"]
    with client.chat.completions.create(
        model="liner:search", messages=messages, stream=True
    ) as stream:
        chunks = [chunk for chunk in stream if chunk.choices]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == REPLY
    cited = [
        citation["url"]
        for chunk in chunks
        for citation in (chunk.choices[0].delta.model_extra or {}).get("citations") or []
    ]
    assert cited == [REFERENCE["url"]]
    assert chunks[-1].choices[0].finish_reason == "stop"
    # Liner reports no token counts; both calls are still recorded, charged at least the
    # input counted at admission and any per-request price.
    rows = usage_rows(upstreams.base_url, user_id, 2)
    assert sorted((row["model"], row["status_code"]) for row in rows) == [
        ("quick-answer", 200),
        ("search", 200),
    ]
    assert all(row["prompt_tokens"] > 0 and row["completion_tokens"] == 0 for row in rows)
    costs = {row["model"]: Decimal(str(row["cost"])) for row in rows}
    assert costs == {"quick-answer": Decimal("0.01"), "search": 0}


def test_sagemaker_chat_through_an_endpoint(upstreams: Upstreams) -> None:
    user_id = "anyllm-sagemaker"
    client = _openai(upstreams, user_id)
    reply = client.chat.completions.create(
        model="sagemaker:llama-3-1-8b-chat", messages=[{"role": "user", "content": PROMPT}]
    )
    assert reply.choices[0].message.content == REPLY
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 3)
    _assert_row(upstreams, user_id, "sagemaker", Expected("llama-3-1-8b-chat", 2, 3))


@pytest.mark.parametrize("with_usage", [True, False])
def test_a_sagemaker_stream_is_the_answer_replayed(upstreams: Upstreams, with_usage: bool) -> None:
    """any-llm's SageMaker streams cannot read what chat containers send: the gateway makes
    the unstreamed call and answers the stream with it, billed the same."""
    user_id = f"anyllm-sagemaker-stream-{with_usage}"
    client = _openai(upstreams, user_id)
    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if with_usage else {}
    chunks = list(
        client.chat.completions.create(
            model="sagemaker:llama-3-1-8b-chat",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            **options,
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == REPLY
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    counts = [(ch.usage.prompt_tokens, ch.usage.completion_tokens) for ch in chunks if ch.usage]
    assert counts == ([(2, 3)] if with_usage else [])
    _assert_row(upstreams, user_id, "sagemaker", Expected("llama-3-1-8b-chat", 2, 3))
