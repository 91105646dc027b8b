"""Error bodies and SSE framing in each surface's own format.

OpenAI surfaces use ``{"error": {message, type, param, code}}``; ``/v1/messages`` uses
Anthropic's ``{"type": "error", "error": {type, message}}``. Streams carry the same bodies
as an SSE event so the official SDKs raise their usual exceptions mid-stream.
"""

from __future__ import annotations

from typing import Any

import orjson

from otari_gateway.errors import GatewayError

DONE = b"data: [DONE]\n\n"
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def openai_error_body(error: GatewayError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": error.openai_type,
            "param": error.param,
            "code": error.code,
        }
    }


def anthropic_error_body(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error.anthropic_type, "message": error.message}}


def sse_data(payload: Any) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_event(name: str, payload: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def chat_error_event(error: GatewayError) -> bytes:
    return sse_data(openai_error_body(error))


def messages_error_event(error: GatewayError) -> bytes:
    return sse_event("error", anthropic_error_body(error))


def responses_error_event(error: GatewayError, sequence_number: int) -> bytes:
    body = {
        "type": "error",
        "code": error.code or error.openai_type,
        "message": error.message,
        "param": error.param,
        "sequence_number": sequence_number,
    }
    return sse_event("error", body)
