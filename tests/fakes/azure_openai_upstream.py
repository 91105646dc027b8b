"""Fake Azure OpenAI resource: OpenAI's bodies at Azure's addresses, with Azure's own fields.

Its ``base_url`` is the resource endpoint (``https://RESOURCE.openai.azure.com``). Served:

- the classic deployment routes, ``POST /openai/deployments/{deployment}/chat/completions``
  and ``…/embeddings``, which need an ``api-version`` query (without one Azure answers 404
  "Resource not found") and the key in an ``api-key`` header (a key sent as a bearer token
  is refused: that header is for Microsoft Entra tokens). The deployment, not the body's
  ``model``, picks the model, and answers name the deployed model;
- the v1 API, ``POST /openai/v1/chat/completions`` and ``/openai/v1/embeddings``, with the
  deployment name as ``model``, which takes the key in ``api-key`` or as a bearer token.

Chat answers carry Azure's content-filter annotations: ``prompt_filter_results`` on the
completion (in a stream, a first chunk of its own with empty ``choices``, ``id`` and
``model``) and ``content_filter_results`` on every choice. Errors are Azure's
``{"error": {"code", "message"}}``: a wrong key is 401 with code ``"401"``, an unknown
deployment 404 ``DeploymentNotFound``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import orjson

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.routes import PatternRoutes
from tests.fakes.server import Handler, JsonReply, RecordedRequest, Reply, SseReply
from tests.fakes.server import sse_frame as frame

DEPLOYMENTS = {"my-gpt4o-deployment": "gpt-4o-2024-08-06", "embedder": "text-embedding-3-small"}
"""Deployment name → the model deployed under it."""

_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/")
_DATED_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_SAFE = {"filtered": False, "severity": "safe"}
_FILTERS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_PROMPT_FILTERS = [{"prompt_index": 0, "content_filter_results": _FILTERS}]


def azure_error(status: int, code: str, message: str) -> JsonReply:
    return JsonReply({"error": {"code": code, "message": message}}, status=status)


class FakeAzureOpenAI(FakeOpenAI):
    """One resource with the deployments in ``DEPLOYMENTS``."""

    request_id_header = "apim-request-id"

    def __init__(self, api_key: str = "0123456789abcdef0123456789abcdef") -> None:
        super().__init__(api_key, models=tuple(DEPLOYMENTS))

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return PatternRoutes(
            {
                ("POST", r"/openai/v1/chat/completions"): self._annotated_chat,
                ("POST", r"/openai/v1/embeddings"): self._embeddings,
                ("POST", r"/openai/deployments/[^/]+/chat/completions"): self._deployed_chat,
                ("POST", r"/openai/deployments/[^/]+/embeddings"): self._deployed_embeddings,
            }
        )

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return azure_error(status, str(status), message or "Error.")

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        keys = [request.headers.get("api-key")]
        if request.path.startswith("/openai/v1/"):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            keys.append(token if scheme.lower() == "bearer" else None)
        if self.api_key in keys:
            return None
        return azure_error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource.",
        )

    # ----------------------------------------------------------------- deployment routes
    def _deployed(self, request: RecordedRequest) -> RecordedRequest | JsonReply:
        """The request as if it named the deployed model, or Azure's refusal."""
        version = request.query.get("api-version")
        if version is None or not _DATED_VERSION.fullmatch(version):
            return azure_error(404, "404", "Resource not found")
        match = _DEPLOYMENT.match(request.path)
        assert match is not None
        model = DEPLOYMENTS.get(match.group(1))
        if model is None:
            return azure_error(
                404,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again.",
            )
        return dataclasses.replace(request, json={**request.json_object(), "model": model})

    def _deployed_chat(self, request: RecordedRequest) -> Reply:
        deployed = self._deployed(request)
        return deployed if isinstance(deployed, JsonReply) else self._annotated_chat(deployed)

    def _deployed_embeddings(self, request: RecordedRequest) -> Reply:
        deployed = self._deployed(request)
        return deployed if isinstance(deployed, JsonReply) else self._embeddings(deployed)

    # ----------------------------------------------------------------- content filters
    def _annotated_chat(self, request: RecordedRequest) -> Reply:
        reply = self._chat(request)
        if isinstance(reply, SseReply):
            return SseReply([_prompt_filter_chunk(), *map(_annotate_frame, reply.frames)])
        if isinstance(reply, JsonReply) and reply.status == 200:
            body = {**reply.body, "prompt_filter_results": _PROMPT_FILTERS}
            body["choices"] = [_annotate_choice(choice) for choice in body["choices"]]
            return JsonReply(body)
        return reply


def _annotate_choice(choice: dict[str, Any]) -> dict[str, Any]:
    return {**choice, "content_filter_results": _FILTERS}


def _prompt_filter_chunk() -> bytes:
    chunk = {"choices": [], "created": 0, "id": "", "model": "", "object": ""}
    return frame({**chunk, "prompt_filter_results": _PROMPT_FILTERS})


def _annotate_frame(raw: bytes) -> bytes:
    data = raw.removeprefix(b"data: ").strip()
    if data == b"[DONE]":
        return raw
    chunk = orjson.loads(data)
    chunk["choices"] = [_annotate_choice(choice) for choice in chunk["choices"]]
    return frame(chunk)
