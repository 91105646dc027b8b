"""A client that opens a streaming request on a raw socket and hangs up after one event."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson


async def read_one_event_then_hang_up(
    port: int, key: str, path: str, body: dict[str, Any]
) -> bytes:
    """POST a streaming request, read until the first complete event, close the socket."""
    payload = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(head + payload)
        await writer.drain()
        async with asyncio.timeout(10):
            while b"data:" not in received or not received.rstrip(b"\r\n").endswith(b"}"):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return received
