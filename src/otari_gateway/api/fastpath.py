"""The FastAPI app, with the generation routes dispatched ahead of its middleware stack.

Every ASGI message of a FastAPI route passes through about a dozen layers (error,
telemetry, body-limit and exit-stack middleware, the router, the route wrapper). The
generation handlers already map every failure to their own error envelope, so their POSTs
are dispatched directly; everything else — management, docs, health, a GET on a
generation path — takes the ordinary FastAPI route. With CORS configured the fast path is
off, so CORS headers apply to every route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class GatewayApp(FastAPI):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast: dict[str, Endpoint] = {}

    def add_fast_routes(self, routes: Iterable[BaseRoute]) -> None:
        """Register POST endpoints for direct dispatch (they stay in the router too)."""
        for route in routes:
            if isinstance(route, Route) and route.methods and "POST" in route.methods:
                self._fast[route.path] = route.endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._fast.get(scope["path"])
            if endpoint is not None:
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
