"""Azure OpenAI end to end: official SDKs → gateway → fake Azure resource.

Three instances of one fake resource: the classic deployment route with the deployment
taken from the model, the same route with a deployment pinned in the config, and the v1
API configured only through Azure's own variables. The fake checks each route's path,
``api-version`` query and ``api-key`` header, and annotates answers with Azure's content
filter results, so the relay and the usage reading meet Azure's real shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.azure_openai_upstream import DEPLOYMENTS, FakeAzureOpenAI
from tests.integration.conftest import MASTER_KEY, create_key, usage_rows
from tests.integration.gateway_process import GatewayProcess

PROMPT = "hi there"
REPLY = "echo: hi there"
PROMPT_TOKENS = 2
REPLY_TOKENS = 3
DEPLOYMENT = "my-gpt4o-deployment"
CLASSIC_VERSION = "2024-10-21"
PINNED_VERSION = "2025-04-01-preview"


@dataclass(frozen=True)
class Route:
    """Where an instance's chat request must arrive, and with which query."""

    model: str
    path: str
    query: dict[str, str]


ROUTES = {
    "azure_classic": Route(
        DEPLOYMENT,
        f"/openai/deployments/{DEPLOYMENT}/chat/completions",
        {"api-version": CLASSIC_VERSION},
    ),
    # The pinned deployment serves whatever model name the client uses.
    "azure_pinned": Route(
        "gpt-4o",
        f"/openai/deployments/{DEPLOYMENT}/chat/completions",
        {"api-version": PINNED_VERSION},
    ),
    "azure_v1": Route(DEPLOYMENT, "/openai/v1/chat/completions", {}),
}


@dataclass
class Setup:
    gateway: GatewayProcess
    azure: FakeAzureOpenAI

    @property
    def base_url(self) -> str:
        return self.gateway.base_url

    def openai(self, user_id: str) -> openai.OpenAI:
        key = create_key(self.base_url, user_id=user_id)
        return openai.OpenAI(
            base_url=self.base_url + "/v1", api_key=str(key["key"]), max_retries=0, timeout=30
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with FakeAzureOpenAI() as azure:
        resource = {"provider_type": "azureopenai", "api_key": azure.api_key}
        config = {
            "master_key": MASTER_KEY,
            "require_pricing": False,
            "providers": {
                "azure_classic": {
                    **resource,
                    "api_base": azure.base_url,
                    "api_version": CLASSIC_VERSION,
                },
                "azure_pinned": {
                    **resource,
                    "api_base": azure.base_url + "/",
                    "api_version": PINNED_VERSION,
                    "deployment": DEPLOYMENT,
                },
                # Endpoint and key from AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY.
                "azure_v1": {"provider_type": "azureopenai"},
                "azure_badkey": {
                    **resource,
                    "api_key": "ffffffffffffffffffffffffffffffff",
                    "api_base": azure.base_url,
                    "api_version": CLASSIC_VERSION,
                },
            },
        }
        env = {
            "AZURE_OPENAI_ENDPOINT": azure.base_url + "/openai/v1/",
            "AZURE_OPENAI_API_KEY": azure.api_key,
        }
        gateway = GatewayProcess(config, tmp_path_factory.mktemp("azure"), env=env)
        gateway.start()
        try:
            yield Setup(gateway, azure)
        finally:
            gateway.stop()


def _assert_routed(setup: Setup, instance: str) -> dict[str, Any]:
    """The upstream request's body, after checking its address and credentials."""
    route = ROUTES[instance]
    sent = setup.azure.last_request
    assert sent.path == route.path
    assert sent.query == route.query
    assert sent.headers["api-key"] == setup.azure.api_key
    assert "authorization" not in sent.headers
    return sent.json_object()


def _assert_row(setup: Setup, user_id: str, instance: str) -> None:
    [row] = usage_rows(setup.base_url, user_id)
    assert row["status_code"] == 200
    assert row["provider"] == instance
    assert row["model"] == ROUTES[instance].model
    assert row["prompt_tokens"] == PROMPT_TOKENS
    assert row["completion_tokens"] == REPLY_TOKENS


@pytest.mark.parametrize("instance", sorted(ROUTES))
def test_chat(setup: Setup, instance: str) -> None:
    user_id = f"azure-chat-{instance}"
    with setup.openai(user_id) as client:
        reply = client.chat.completions.create(
            model=f"{instance}:{ROUTES[instance].model}",
            messages=[{"role": "user", "content": PROMPT}],
        )
    assert reply.choices[0].message.content == REPLY
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == PROMPT_TOKENS
    assert reply.usage.completion_tokens == REPLY_TOKENS
    # Azure's annotations reach the client untouched.
    assert "prompt_filter_results" in (reply.model_extra or {})
    assert _assert_routed(setup, instance)["model"] == ROUTES[instance].model
    _assert_row(setup, user_id, instance)


@pytest.mark.parametrize("instance", sorted(ROUTES))
def test_stream_reports_usage_when_asked(setup: Setup, instance: str) -> None:
    user_id = f"azure-stream-{instance}"
    with setup.openai(user_id) as client:
        chunks = list(
            client.chat.completions.create(
                model=f"{instance}:{ROUTES[instance].model}",
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    # Azure's first chunk holds only the prompt's filter results.
    assert chunks[0].choices == []
    assert chunks[0].usage is None
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == REPLY
    assert [ch for ch in chunks if ch.usage is not None] == [chunks[-1]]
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, REPLY_TOKENS)
    _assert_routed(setup, instance)
    _assert_row(setup, user_id, instance)


def test_stream_without_include_usage_is_still_billed(setup: Setup) -> None:
    user_id = "azure-stream-nousage"
    with setup.openai(user_id) as client:
        chunks = list(
            client.chat.completions.create(
                model=f"azure_classic:{DEPLOYMENT}",
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
        )
    assert all(ch.usage is None for ch in chunks)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == REPLY
    sent = _assert_routed(setup, "azure_classic")
    assert sent["stream_options"] == {"include_usage": True}
    _assert_row(setup, user_id, "azure_classic")


@pytest.mark.parametrize(
    ("instance", "path", "query"),
    [
        ("azure_classic", "/openai/deployments/embedder/embeddings", {"api-version": "2024-10-21"}),
        ("azure_v1", "/openai/v1/embeddings", {}),
    ],
)
def test_embeddings(setup: Setup, instance: str, path: str, query: dict[str, str]) -> None:
    with setup.openai(f"azure-embed-{instance}") as client:
        result = client.embeddings.create(model=f"{instance}:embedder", input=["a b", "c"])
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens == 3
    assert setup.azure.last_request.path == path
    assert setup.azure.last_request.query == query


def test_messages_surface_is_translated(setup: Setup) -> None:
    key = create_key(setup.base_url, user_id="azure-messages")
    with anthropic.Anthropic(
        base_url=setup.base_url, api_key=str(key["key"]), max_retries=0, timeout=30
    ) as client:
        message = client.messages.create(
            model=f"azure_classic:{DEPLOYMENT}",
            max_tokens=64,
            messages=[{"role": "user", "content": PROMPT}],
        )
        with client.messages.stream(
            model=f"azure_classic:{DEPLOYMENT}",
            max_tokens=64,
            messages=[{"role": "user", "content": PROMPT}],
        ) as stream:
            final = stream.get_final_message()
    for answer in (message, final):
        assert answer.content[0].type == "text"
        assert answer.content[0].text == REPLY
        assert answer.usage.output_tokens == REPLY_TOKENS


def test_unknown_deployment_is_a_404(setup: Setup) -> None:
    assert "absent" not in DEPLOYMENTS
    with setup.openai("azure-missing") as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="azure_classic:absent", messages=[{"role": "user", "content": PROMPT}]
        )
    assert "deployment" in caught.value.message.lower()


def test_rejected_key_is_a_502_without_the_key(setup: Setup) -> None:
    with setup.openai("azure-badkey") as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=f"azure_badkey:{DEPLOYMENT}", messages=[{"role": "user", "content": PROMPT}]
        )
    assert caught.value.status_code == 502
    assert "upstream_auth" in caught.value.response.text
    assert "ffffffff" not in caught.value.response.text
