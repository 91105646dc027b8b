"""Fakes for APIs that are OpenAI's chat-completions format at another address.

Mistral (``/v1/chat/completions``; a stream always ends with a usage chunk, asked for or
not), which any-llm reaches with its own SDK. Azure OpenAI has a module of its own
(``tests.fakes.azure_openai_upstream``).
"""

from __future__ import annotations

import dataclasses

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import RecordedRequest, Reply


class FakeMistral(FakeOpenAI):
    """Fake ``https://api.mistral.ai``; the mistralai SDK's ``server_url`` is its root."""

    def __init__(self, api_key: str = "fake-mistral-key-0123456789") -> None:
        super().__init__(api_key, models=("mistral-small-latest",))

    def _chat(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if body.get("stream"):
            # Mistral reports usage on every stream; it has no stream_options.
            body = {**body, "stream_options": {"include_usage": True}}
            request = dataclasses.replace(request, json=body)
        return super()._chat(request)
