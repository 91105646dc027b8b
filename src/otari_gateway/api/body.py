"""Reading a request: the few headers the gateway uses, and the body — a size limit
enforced while reading, then JSON parsing. Works on the raw ASGI scope and ``receive``
(Starlette's ``Headers`` and ``Request.stream`` showed up in the hot-path profile)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import Receive, Scope

from otari_gateway.errors import InvalidRequest, RequestTooLarge


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"request body exceeds the gateway's limit of {limit} bytes")


_WANTED = frozenset(
    {
        b"content-length",
        b"content-type",
        b"otari-key",
        b"authorization",
        b"x-api-key",
        b"anthropic-beta",
    }
)


def wanted_headers(scope: Scope) -> dict[str, str]:
    """The request headers the generation path reads, in one pass (ASGI names are lowercase)."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _WANTED
    }


async def read_body(receive: Receive, limit: int, declared: str | None) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidRequest("the client disconnected while sending the request body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json_object(receive: Receive, limit: int, declared: str | None) -> dict[str, Any]:
    raw = await read_body(receive, limit, declared)
    if not raw.strip():
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body
