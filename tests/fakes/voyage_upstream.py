"""Fake Voyage AI API: ``POST /v1/embeddings`` and ``POST /v1/rerank``.

Voyage's own shapes: embeddings as an OpenAI-like list with ``usage.total_tokens`` only, and a
rerank answer whose results are under ``data`` (best first, ``top_k`` of them) with the tokens
read in ``usage.total_tokens``. Errors are ``{"detail": message}``.
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.fakes import content as c
from tests.fakes.server import FakeUpstream, Handler, JsonReply, RecordedRequest, Reply


class FakeVoyage(FakeUpstream):
    """Point the voyageai SDK at it with ``base_url`` (the instance ``api_base``, ending /v1)."""

    def __init__(self, api_key: str = "pa-fake-voyage-key-0123456789") -> None:
        super().__init__(api_key)

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/v1"

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {("POST", "/v1/embeddings"): self._embeddings, ("POST", "/v1/rerank"): self._rerank}

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return JsonReply({"detail": message or f"error {status}"}, status)

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error_reply(401, "Provided API key is invalid.")
        return None

    def _embeddings(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if c.is_missing_model(str(body.get("model"))):
            return self.error_reply(400, f"Model {body.get('model')} is not supported.")
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [
            {"object": "embedding", "embedding": c.embedding_vector(text), "index": index}
            for index, text in enumerate(texts)
        ]
        return JsonReply(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"total_tokens": c.count_words(texts)},
            }
        )

    def _rerank(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if c.is_missing_model(str(body.get("model"))):
            return self.error_reply(400, f"Model {body.get('model')} is not supported.")
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            return self.error_reply(400, "query and documents are required")
        texts = [str(document) for document in documents]
        scored = c.rerank_scores(query, texts)[: body.get("top_k") or len(texts)]
        return JsonReply(
            {
                "object": "list",
                "data": [{"relevance_score": score, "index": i} for score, i in scored],
                "model": body.get("model"),
                "usage": {"total_tokens": c.rerank_tokens(query, texts)},
            }
        )
