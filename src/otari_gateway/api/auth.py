"""Authentication as a FastAPI dependency for the management and listing routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from otari_gateway.api.services import Services
from otari_gateway.errors import PermissionDenied
from otari_gateway.pipeline.request import Caller


def require_caller(services: Services) -> Callable[[Request], Awaitable[Caller]]:
    """Any valid credential: the master key or an active virtual key."""

    async def dependency(request: Request) -> Caller:
        return await services.runtime.authenticator.authenticate(request.headers)

    return dependency


def require_master(services: Services) -> Callable[[Request], Awaitable[Caller]]:
    """The master key only (management endpoints)."""

    async def dependency(request: Request) -> Caller:
        caller = await services.runtime.authenticator.authenticate(request.headers)
        if not caller.is_master:
            raise PermissionDenied(
                "this endpoint requires the master key", code="master_key_required"
            )
        return caller

    return dependency
