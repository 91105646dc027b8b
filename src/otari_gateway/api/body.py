"""Reading a request body: a size limit enforced while reading, then JSON parsing."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from otari_gateway.errors import InvalidRequest, RequestTooLarge


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"request body exceeds the gateway's limit of {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    raw = await read_body(request, limit)
    if not raw.strip():
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body
