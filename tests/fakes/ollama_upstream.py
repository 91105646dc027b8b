"""Fake Ollama server: ``POST /api/chat``, streaming as newline-delimited JSON.

Each stream line is a partial message with ``done: false``; the last has ``done: true``,
``done_reason`` and the token counts (``prompt_eval_count``, ``eval_count``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tests.fakes import content as c
from tests.fakes.server import FakeUpstream, Handler, JsonReply, RecordedRequest, Reply, SseReply

_CREATED_AT = "2026-01-01T00:00:00.000000Z"


class FakeOllama(FakeUpstream):
    """Point the ollama client at it with ``host`` (the instance ``api_base``); no key."""

    def __init__(self) -> None:
        super().__init__("")

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {("POST", "/api/chat"): self._chat, ("POST", "/api/embed"): self._embed}

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return JsonReply({"error": message or f"error {status}"}, status)

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        return None

    def _chat(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        model = str(body.get("model"))
        if c.is_missing_model(model):
            return self.error_reply(404, f"model '{model}' not found")
        messages = body.get("messages") or []
        user_text = next(
            (str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        reply = c.echo_reply(user_text)
        counts = {
            "prompt_eval_count": c.count_words(str(m.get("content")) for m in messages),
            "eval_count": c.reply_tokens(reply),
        }
        final = {"done": True, "done_reason": "stop", "total_duration": 1000, **counts}
        if body.get("stream") is False:
            message = {"role": "assistant", "content": reply}
            return JsonReply(_line(model, message) | final)
        lines = [
            orjson.dumps(_line(model, {"role": "assistant", "content": piece}) | {"done": False})
            + b"\n"
            for piece in c.stream_pieces(reply)
        ]
        lines.append(
            orjson.dumps(_line(model, {"role": "assistant", "content": ""}) | final) + b"\n"
        )
        return SseReply(lines, content_type="application/x-ndjson")

    def _embed(self, request: RecordedRequest) -> Reply:
        body = request.json_object()
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        return JsonReply(
            {
                "model": body.get("model"),
                "embeddings": [c.embedding_vector(t) for t in texts],
                "prompt_eval_count": c.count_words(texts),
            }
        )


def _line(model: str, message: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "created_at": _CREATED_AT, "message": message}
