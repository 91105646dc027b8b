"""Health probes. The port only opens once start-up is complete (schema migrated, provider
pools open), so ``/health`` answering means the gateway is up; readiness also checks the
database and answers 503 while it is unreachable."""

from __future__ import annotations

from typing import Literal, Protocol

from fastapi import APIRouter
from pydantic import BaseModel

from otari_gateway.errors import ServiceUnavailable


class Pingable(Protocol):
    async def ping(self) -> bool: ...


class HealthStatus(BaseModel):
    status: Literal["healthy", "alive", "ready"]


def health_router(database: Pingable) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", response_model=HealthStatus)
    async def health() -> HealthStatus:
        return HealthStatus(status="healthy")

    @router.get("/health/liveness", response_model=HealthStatus)
    async def liveness() -> HealthStatus:
        return HealthStatus(status="alive")

    @router.get(
        "/health/readiness",
        response_model=HealthStatus,
        responses={503: {"description": "The database is unreachable"}},
    )
    async def readiness() -> HealthStatus:
        if not await database.ping():
            raise ServiceUnavailable("the database is unreachable", code="database_unavailable")
        return HealthStatus(status="ready")

    return router
