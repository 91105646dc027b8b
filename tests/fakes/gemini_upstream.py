"""Fake Gemini API (``generativelanguage.googleapis.com``) speaking its REST wire format.

``POST /v1beta/models/{model}:generateContent`` answers a ``GenerateContentResponse``;
``:streamGenerateContent?alt=sse`` streams one per SSE event, each with the usage so far;
``:embedContent`` / ``:batchEmbedContents`` embed. The key travels in ``x-goog-api-key``,
and a wrong key is a 400 ``INVALID_ARGUMENT``, as Google answers it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from tests.fakes import content as c
from tests.fakes.routes import PatternRoutes
from tests.fakes.server import FakeUpstream, Handler, JsonReply, RecordedRequest, Reply, SseReply

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
# The model in a Gemini API path, or in a Vertex AI one (``…/publishers/google/models/…``).
_MODEL = re.compile(r"/models/([^:/]+):")
CACHED_TOKENS = 2
THOUGHTS_TOKENS = 4
THOUGHT = "the user greets me"
"""A model whose name contains ``thinking`` answers with this thought part first (streamed:
in the first event)."""


def _error(status: int, message: str | None = None) -> JsonReply:
    name = _STATUS_NAMES.get(status, "UNKNOWN")
    body = {"error": {"code": status, "message": message or name.lower(), "status": name}}
    return JsonReply(body, status=status)


def _texts(contents: Any) -> list[tuple[str, str]]:
    """(role, text) for every content entry."""
    pairs = []
    for entry in contents or []:
        parts = entry.get("parts") or []
        text = " ".join(p["text"] for p in parts if isinstance(p.get("text"), str))
        pairs.append((entry.get("role", "user"), text))
    return pairs


class FakeGemini(FakeUpstream):
    """Point google-genai at it with ``http_options.base_url`` (the instance ``api_base``)."""

    request_id_header = "x-goog-request-id"

    def __init__(
        self, api_key: str = "AIzaFakeGeminiKey0123456789abcdef", *, stream_interval: float = 0.0
    ) -> None:
        super().__init__(api_key, stream_interval=stream_interval)

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return PatternRoutes(
            {
                ("POST", r"/v1(?:beta)?/models/[^:]+:generateContent"): self._generate,
                ("POST", r"/v1(?:beta)?/models/[^:]+:streamGenerateContent"): self._generate,
                ("POST", r"/v1(?:beta)?/models/[^:]+:batchEmbedContents"): self._embed,
            }
        )

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return _error(status, message)

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        if request.headers.get("x-goog-api-key") != self.api_key:
            return _error(400, "API key not valid. Please pass a valid API key.")
        return None

    def _generate(self, request: RecordedRequest) -> Reply:
        model = _MODEL.search(request.path)
        assert model is not None
        if c.is_missing_model(model.group(1)):
            return _error(404, f"models/{model.group(1)} is not found for API version v1beta")
        body = request.json_object()
        pairs = _texts(body.get("contents"))
        system = _texts([body["systemInstruction"]]) if body.get("systemInstruction") else []
        user_text = next((text for role, text in reversed(pairs) if role == "user"), "")
        reply = c.echo_reply(user_text)
        prompt = c.count_words(text for _, text in [*system, *pairs])
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": c.reply_tokens(reply),
            "totalTokenCount": prompt + c.reply_tokens(reply) + THOUGHTS_TOKENS,
            "cachedContentTokenCount": CACHED_TOKENS,
            "thoughtsTokenCount": THOUGHTS_TOKENS,
        }
        response_id = f"resp-fake{self.next_id()}"
        if request.path.endswith(":streamGenerateContent"):
            return self._stream(model.group(1), response_id, reply, usage, request)
        candidate = _candidate(reply, "STOP")
        if "thinking" in model.group(1):
            candidate["content"]["parts"].insert(0, {"text": THOUGHT, "thought": True})
        return JsonReply(
            {
                "candidates": [candidate],
                "usageMetadata": usage,
                "modelVersion": model.group(1),
                "responseId": response_id,
            }
        )

    @staticmethod
    def _stream(
        model: str, response_id: str, reply: str, usage: dict[str, Any], request: RecordedRequest
    ) -> Reply:
        if request.query.get("alt") != "sse":
            return _error(400, "this fake streams only with alt=sse")
        pieces = c.stream_pieces(reply)
        frames = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            event = {
                "candidates": [_candidate(piece, "STOP" if last else None)],
                # Every event carries the usage so far; only the last one is complete.
                "usageMetadata": usage if last else {"promptTokenCount": usage["promptTokenCount"]},
                "modelVersion": model,
                "responseId": response_id,
            }
            if index == 0 and "thinking" in model:
                event["candidates"][0]["content"]["parts"].insert(
                    0, {"text": THOUGHT, "thought": True}
                )
            frames.append(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        return SseReply(frames)

    def _embed(self, request: RecordedRequest) -> Reply:
        requests = request.json_object().get("requests") or []
        texts = [" ".join(p.get("text", "") for p in r["content"]["parts"]) for r in requests]
        return JsonReply({"embeddings": [{"values": c.embedding_vector(t)} for t in texts]})


def _candidate(text: str, finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = finish
    return candidate
