"""OpenAI-compatible upstreams: OpenAI itself and every server that speaks its API.

vLLM, Ollama, llama.cpp, LM Studio, Groq, Together, DeepSeek, OpenRouter, Mistral, xAI …
differ only in ``api_base`` and key, so one adapter serves them all. Bodies are relayed as
bytes; the adapter only knows paths, the bearer credential and the error envelope.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from otari_gateway.config import ProviderConfig
from otari_gateway.errors import UpstreamError
from otari_gateway.providers.base import Capabilities, DiscoveredModel, Operation, Wire
from otari_gateway.providers.http import HttpUpstream

DEFAULT_API_BASE = "https://api.openai.com/v1"

CAPABILITIES = Capabilities(
    wire=Wire.OPENAI,
    operations=frozenset(
        {
            Operation.CHAT,
            Operation.RESPONSES,
            Operation.EMBEDDINGS,
            Operation.MODERATIONS,
            Operation.RERANK,
            Operation.IMAGES,
            Operation.SPEECH,
            Operation.TRANSCRIPTIONS,
            Operation.FILES,
            Operation.BATCHES,
        }
    ),
)
# Responses requests to these instances are bridged onto Chat Completions by the pipeline.
WITHOUT_RESPONSES = Capabilities(
    wire=Wire.OPENAI, operations=CAPABILITIES.operations - {Operation.RESPONSES}
)

_PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.RESPONSES: "/responses",
    Operation.EMBEDDINGS: "/embeddings",
    Operation.MODERATIONS: "/moderations",
    # Where vLLM, Jina, Infinity and other OpenAI-compatible rerank servers serve it.
    Operation.RERANK: "/rerank",
    Operation.IMAGES: "/images/generations",
    Operation.SPEECH: "/audio/speech",
    Operation.TRANSCRIPTIONS: "/audio/transcriptions",
}


def read_openai_error(body: Any) -> tuple[str | None, str | None, str | None]:
    """``{"error": {"message", "param", "code"}}`` — or a bare ``{"detail"}`` some servers send."""
    error = body.get("error", body)
    if isinstance(error, str):
        return error, None, None
    message = error.get("message") or body.get("detail")
    code = error.get("code")
    return (
        str(message) if message is not None else None,
        error.get("param"),
        str(code) if code is not None else None,
    )


class OpenAICompatProvider(HttpUpstream):
    """An instance whose upstream speaks the OpenAI REST API."""

    capabilities = CAPABILITIES

    def __init__(self, instance: str, config: ProviderConfig, api_key: str | None) -> None:
        if config.native_responses is False:
            self.capabilities = WITHOUT_RESPONSES
        elif config.provider_type == "openai":
            # Not when Responses is switched off: OpenAI serves it, so such an instance is
            # another server configured with OpenAI's type.
            self.capabilities = replace(CAPABILITIES, openai_platform=True)
        base_url = config.client_args.get("base_url") or config.api_base or DEFAULT_API_BASE
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        organization = config.client_args.get("organization")
        if organization:
            headers["OpenAI-Organization"] = str(organization)
        super().__init__(
            instance,
            config,
            base_url=str(base_url),
            auth_headers=headers,
            secret=api_key,
            paths=_PATHS,
            read_error=read_openai_error,
        )

    async def list_models(self) -> list[DiscoveredModel]:
        """``GET {api_base}/models``: ``{"data": [{"id", "created", ...}]}``."""
        body = await self.get_json("/models")
        entries = body.get("data") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise UpstreamError(
                f"provider '{self.instance}' listed its models in an unknown format"
            )
        return [
            DiscoveredModel(entry["id"], _seconds(entry.get("created")))
            for entry in entries
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]
        ]


def _seconds(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
