"""Fake Cohere API v2: ``POST /v2/chat``, streaming as typed SSE events, and ``POST /v2/rerank``.

A stream is ``message-start``, ``content-start``, ``content-delta``…, ``content-end``,
``message-end`` (finish reason and usage), each event's JSON carrying its own ``type``.
Usage has ``billed_units`` and ``tokens``; ``cached_tokens`` sits beside them. A rerank answer
lists ``results`` best first and bills one search unit, with the tokens read in ``meta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.fakes import content as c
from tests.fakes.server import (
    FakeUpstream,
    Handler,
    JsonReply,
    RecordedRequest,
    Reply,
    SseReply,
    sse_frame,
)

CACHED_TOKENS = 1


class FakeCohere(FakeUpstream):
    """Point the cohere SDK at it with ``base_url`` (the instance ``api_base``)."""

    def __init__(self, api_key: str = "fake-cohere-key-0123456789") -> None:
        super().__init__(api_key)

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {("POST", "/v2/chat"): self._chat, ("POST", "/v2/rerank"): self._rerank}

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return JsonReply({"id": "err-fake", "message": message or f"error {status}"}, status)

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error_reply(401, "invalid api token")
        return None

    def _chat(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if c.is_missing_model(str(body.get("model"))):
            return self.error_reply(404, f"model '{body.get('model')}' not found")
        messages = body.get("messages") or []
        texts = [c.text_of(m.get("content")) for m in messages]
        user_text = next(
            (c.text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        reply = c.echo_reply(user_text)
        tokens = {"input_tokens": c.count_words(texts), "output_tokens": c.reply_tokens(reply)}
        usage = {"billed_units": tokens, "tokens": tokens, "cached_tokens": CACHED_TOKENS}
        message_id = f"cohere-fake{self.next_id()}"
        if body.get("stream"):
            return self._stream(message_id, reply, usage)
        return JsonReply(
            {
                "id": message_id,
                "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "content": [{"type": "text", "text": reply}]},
                "usage": usage,
            }
        )

    def _rerank(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        if c.is_missing_model(str(body.get("model"))):
            return self.error_reply(404, f"model '{body.get('model')}' not found")
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            return self.error_reply(400, "invalid request: query and documents are required")
        texts = [str(document) for document in documents]
        scored = c.rerank_scores(query, texts)[: body.get("top_n") or len(texts)]
        return JsonReply(
            {
                "id": f"cohere-rerank-fake{self.next_id()}",
                "results": [{"index": i, "relevance_score": score} for score, i in scored],
                "meta": {
                    "api_version": {"version": "2"},
                    "billed_units": {"search_units": 1},
                    "tokens": {"input_tokens": c.rerank_tokens(query, texts)},
                },
            }
        )

    @staticmethod
    def _stream(message_id: str, reply: str, usage: dict[str, Any]) -> SseReply:
        def event(kind: str, **fields: Any) -> bytes:
            return sse_frame({"type": kind, **fields}, event=kind)

        start = {"message": {"role": "assistant", "content": [], "tool_calls": []}}
        frames = [
            event("message-start", id=message_id, delta=start),
            event(
                "content-start",
                index=0,
                delta={"message": {"content": {"type": "text", "text": ""}}},
            ),
        ]
        frames += [
            event("content-delta", index=0, delta={"message": {"content": {"text": piece}}})
            for piece in c.stream_pieces(reply)
        ]
        frames.append(event("content-end", index=0))
        frames.append(
            event("message-end", id=message_id, delta={"finish_reason": "COMPLETE", "usage": usage})
        )
        return SseReply(frames)
