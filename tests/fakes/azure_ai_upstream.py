"""Fake Microsoft Foundry endpoints: Claude's Messages API and the Azure AI model inference API.

A Foundry resource answers at ``https://RESOURCE.services.ai.azure.com``; each fake's
``base_url`` stands for that root.

``FakeFoundryClaude`` serves ``POST /anthropic/v1/messages``: Anthropic's Messages API
(``FakeAnthropic``) under the ``/anthropic`` prefix of Claude deployments, which is what
anthropic's ``AnthropicFoundry`` client calls (it sends the key as ``x-api-key`` and
``api-key``).

``FakeAzureAIInference`` serves the model inference API the azure-ai-inference SDK speaks:
``POST /models/chat/completions`` and ``/models/embeddings``, OpenAI's bodies and answers
(``FakeOpenAI``; a stream reports usage only when ``stream_options`` asks for it), the
deployment named by the body's ``model``. Every request needs a dated ``api-version`` query
and the key as a bearer token or in ``api-key``. The API defines its own body fields;
another one is refused (422) unless the ``extra-parameters`` header says ``pass-through``
(forward it to the model) or ``drop``. Errors are Azure's ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.azure_openai_upstream import azure_error
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import Handler, JsonReply, RecordedRequest, Reply

_DATED_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
# The body fields of the model inference API's chat and embeddings requests.
_CHAT_FIELDS = frozenset(
    {
        "messages",
        "model",
        "frequency_penalty",
        "presence_penalty",
        "temperature",
        "top_p",
        "max_tokens",
        "response_format",
        "stop",
        "stream",
        "tools",
        "tool_choice",
        "seed",
    }
)
_EMBEDDINGS_FIELDS = frozenset({"input", "model", "dimensions", "encoding_format", "input_type"})


class FakeFoundryClaude(FakeAnthropic):
    """Claude deployed in a Foundry resource; ``AnthropicFoundry``'s base URL is
    ``base_url + "/anthropic"``."""

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {("POST", "/anthropic/v1/messages"): self._messages}


class FakeAzureAIInference(FakeOpenAI):
    """A Foundry resource's model inference endpoint: ``base_url + "/models"``."""

    request_id_header = "apim-request-id"

    def __init__(self, api_key: str = "fedcba9876543210fedcba9876543210") -> None:
        super().__init__(api_key, models=("Mistral-Large-2411", "Cohere-embed-v3-english"))

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("POST", "/models/chat/completions"): self._inference_chat,
            ("POST", "/models/embeddings"): self._inference_embeddings,
        }

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return azure_error(status, str(status), message or "Error.")

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        keys = (request.headers.get("api-key"), token if scheme.lower() == "bearer" else None)
        if self.api_key in keys:
            return None
        return azure_error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint.",
        )

    def _inference_chat(self, request: RecordedRequest) -> Reply:
        checked = _checked(request, _CHAT_FIELDS)
        return checked if isinstance(checked, JsonReply) else self._chat(checked)

    def _inference_embeddings(self, request: RecordedRequest) -> Reply:
        checked = _checked(request, _EMBEDDINGS_FIELDS)
        return checked if isinstance(checked, JsonReply) else self._embeddings(checked)


def _checked(request: RecordedRequest, fields: frozenset[str]) -> RecordedRequest | JsonReply:
    """The request as the model gets it (extra fields dropped or passed), or the refusal."""
    version = request.query.get("api-version")
    if version is None or not _DATED_VERSION.fullmatch(version):
        return azure_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    body = request.json_object()
    extra = sorted(set(body) - fields)
    mode = request.headers.get("extra-parameters", "error")
    if not extra or mode == "pass-through":
        return request
    if mode == "drop":
        kept = {name: value for name, value in body.items() if name in fields}
        return dataclasses.replace(request, json=kept)
    return azure_error(
        422,
        "extra_parameters_not_allowed",
        f"Extra parameters {extra} are not allowed when extra-parameters is not set or set "
        "to 'error'. Set extra-parameters to 'pass-through' to pass them to the model.",
    )
