"""Authentication as a FastAPI dependency for the management and listing routes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from otari_gateway.api.services import Services
from otari_gateway.pipeline.request import Caller


def require_caller(services: Services) -> Callable[[Request], Caller]:
    def dependency(request: Request) -> Caller:
        return services.authenticator.authenticate(request.headers)

    return dependency
