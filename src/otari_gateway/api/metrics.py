"""``GET /metrics``: the Prometheus exposition of this process's ``Metrics`` (or, with
``PROMETHEUS_MULTIPROC_DIR`` set, of every worker; see ``telemetry/metrics.py``).

Mounted only when ``enable_metrics`` is on. It takes no credential, as Prometheus scrapers
expect: the counts it shows (models, providers, request volume, spend) are not secret but
are not public either, so operators should keep the port (or this path) off the public
internet, e.g. scrape on an internal network or block ``/metrics`` at the proxy. It is
left out of the OpenAPI document, which describes the client and management API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.responses import Response

if TYPE_CHECKING:
    from otari_gateway.telemetry.metrics import Metrics


def metrics_router(metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        body, content_type = metrics.render()
        return Response(body, headers={"Content-Type": content_type})

    return router
