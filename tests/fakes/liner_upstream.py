"""Fake Liner agents API: answers from a web search, with the references they used.

Liner publishes no schema to check against; this follows what any-llm's Liner provider (the
client under test) sends and reads. ``POST /api/v1/agents/{agent}`` (``quick-answer``,
``search``) takes the key in ``x-api-key`` and a JSON body of ``messages`` (user and
assistant text) and ``stream``. A plain answer is ``{"answer", "references": [{url, title,
description, faviconUrl, imageUrl, date}]}``; a stream is ``data:`` lines of typed parts:
``start``, ``data-search-references`` (``data.references``), ``text-start``,
``text-delta`` (``delta``)…, ``text-end``, ``finish``, then ``data: [DONE]``. No token
counts are reported. Errors here are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.fakes import content as c
from tests.fakes.routes import PatternRoutes
from tests.fakes.server import FakeUpstream, Handler, JsonReply, RecordedRequest, Reply, SseReply
from tests.fakes.server import sse_frame as frame

AGENTS = ("quick-answer", "search")
REFERENCE = {
    "url": "https://example.com/greetings",
    "title": "Greetings",
    "description": "How people say hello.",
    "faviconUrl": "https://example.com/favicon.ico",
    "imageUrl": "",
    "date": "2026-01-02",
}
_AGENT = re.compile(r"/api/v1/agents/([^/]+)")


def _error(status: int, code: str, message: str) -> JsonReply:
    return JsonReply({"error": {"code": code, "message": message}}, status=status)


class FakeLiner(FakeUpstream):
    """Fake ``https://platform.liner.com``; any-llm's ``api_base`` is
    ``base_url + "/api/v1/agents"``."""

    def __init__(self, api_key: str = "liner-fake-key-0123456789") -> None:
        super().__init__(api_key)

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return PatternRoutes({("POST", _AGENT.pattern): self._answer})

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        return _error(status, str(status), message or "Error.")

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        if request.headers.get("x-api-key") == self.api_key:
            return None
        return _error(401, "unauthorized", "Invalid API key.")

    def _answer(self, request: RecordedRequest) -> Reply:
        match = _AGENT.fullmatch(request.path)
        assert match is not None
        if match.group(1) not in AGENTS:
            return _error(404, "not_found", f"Unknown agent: {match.group(1)}")
        messages: list[dict[str, Any]] = request.json_object().get("messages") or []
        if not messages or messages[-1].get("role") != "user":
            return _error(400, "invalid_request", "messages must end with a user message")
        answer = c.echo_reply(c.text_of(messages[-1].get("content")))
        if request.json_object().get("stream"):
            return _stream(answer)
        return JsonReply({"answer": answer, "references": [REFERENCE]})


def _stream(answer: str) -> SseReply:
    parts: list[dict[str, Any]] = [
        {"type": "start"},
        {"type": "data-search-references", "data": {"references": [REFERENCE]}},
        {"type": "text-start", "id": "text-0"},
        *({"type": "text-delta", "id": "text-0", "delta": p} for p in c.stream_pieces(answer)),
        {"type": "text-end", "id": "text-0"},
        {"type": "finish"},
    ]
    return SseReply([*map(frame, parts), frame(b"[DONE]")])
