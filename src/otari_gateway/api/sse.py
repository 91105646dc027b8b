"""A server-sent-events response that notices the client leaving.

Written against raw ASGI rather than Starlette's ``StreamingResponse`` because it must
cancel the upstream read as soon as ``http.disconnect`` arrives, not at the next chunk,
and still let the pipeline settle (its relay's ``finally`` runs shielded).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


class SSEResponse(Response):
    def __init__(self, events: AsyncGenerator[bytes, None], headers: Mapping[str, str]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.raw_headers = [*_SSE_HEADERS] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
                async for chunk in self.events:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()
        except OSError:
            # The transport went away between two sends; the relay settles in its finally.
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await self.events.aclose()

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return
