"""A request id on every answer of the ordinary routes (management, models, files, stored
responses …), in the headers the official SDKs read, and on the request's log lines.

The generation routes make their own (it is their usage row's id) and are dispatched
ahead of this middleware; an answer that already carries one is left alone.
"""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otari_gateway.api.errors import REQUEST_ID_HEADER, envelope_for_path, request_id_headers
from otari_gateway.pipeline.ids import new_request_id

_OWN_HEADER = REQUEST_ID_HEADER.lower().encode()


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = new_request_id()
        headers = request_id_headers(request_id, envelope_for_path(scope["path"]))
        extra = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = list(message.get("headers", []))
                if not any(name.lower() == _OWN_HEADER for name, _ in present):
                    message = {**message, "headers": present + extra}
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self._app(scope, receive, send_with_id)
