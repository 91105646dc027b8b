"""Health probes. The port only opens once start-up is complete, so ``/health`` answering
means providers are built; readiness is where dependency checks (database) belong."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel


class HealthStatus(BaseModel):
    status: Literal["healthy", "alive", "ready"]


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health", response_model=HealthStatus)
    async def health() -> HealthStatus:
        return HealthStatus(status="healthy")

    @router.get("/health/liveness", response_model=HealthStatus)
    async def liveness() -> HealthStatus:
        return HealthStatus(status="alive")

    @router.get("/health/readiness", response_model=HealthStatus)
    async def readiness() -> HealthStatus:
        return HealthStatus(status="ready")

    return router
