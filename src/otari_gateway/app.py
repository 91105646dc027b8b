"""``create_app(config)``: wiring only — build the services, list routes and middleware once."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from otari_gateway import __version__
from otari_gateway.api.auth import require_caller, require_master
from otari_gateway.api.batches import batches_router
from otari_gateway.api.budgets import budgets_router
from otari_gateway.api.errors import EXCEPTION_HANDLERS
from otari_gateway.api.fastpath import GatewayApp
from otari_gateway.api.files import files_router
from otari_gateway.api.generation import generation_routes
from otari_gateway.api.health import health_router
from otari_gateway.api.keys import keys_router
from otari_gateway.api.metrics import metrics_router
from otari_gateway.api.models import models_router
from otari_gateway.api.openapi import merge_generation_paths
from otari_gateway.api.pricing import pricing_router
from otari_gateway.api.request_ids import RequestIds
from otari_gateway.api.responses import responses_router
from otari_gateway.api.services import Services
from otari_gateway.api.usage import usage_router
from otari_gateway.api.users import users_router
from otari_gateway.config import CONFIG_PATH_ENV, GatewayConfig, load_config
from otari_gateway.control.budgets import BudgetService
from otari_gateway.control.keys import KeyService
from otari_gateway.control.pricing import PricingService
from otari_gateway.control.usage import UsageService
from otari_gateway.control.users import UserService
from otari_gateway.pipeline.batches import Batches
from otari_gateway.pipeline.files import Files
from otari_gateway.pipeline.runtime import Runtime
from otari_gateway.pipeline.upstream_objects import ObjectAccess
from otari_gateway.process import settle_heap, tune_malloc
from otari_gateway.telemetry.logging import configure_logging

if TYPE_CHECKING:
    from otari_gateway.telemetry.metrics import Metrics


def create_app(config: GatewayConfig, environ: Mapping[str, str] | None = None) -> FastAPI:
    tune_malloc()
    configure_logging(config.log_level)
    metrics = _metrics() if config.enable_metrics else None
    runtime = Runtime(config, os.environ if environ is None else environ, metrics)
    services = Services(
        config=config,
        runtime=runtime,
        started_at=int(time.time()),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            await runtime.start(group)
            settle_heap()
            try:
                yield
            finally:
                await runtime.stop()
                if metrics is not None:
                    metrics.close()

    app = GatewayApp(
        title="Otari gateway",
        version=__version__,
        description="OpenAI- and Anthropic-compatible LLM gateway",
        lifespan=lifespan,
        docs_url="/docs" if config.enable_docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if config.enable_docs else None,
        exception_handlers=EXCEPTION_HANDLERS,
        # FastAPI's built-in OpenTelemetry hook probes the environment on every request
        # (measured: 9% of the gateway's CPU); tracing, when added, will be explicit.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    hot_routes = generation_routes(services)
    app.router.routes.extend(hot_routes)
    if not config.cors_allow_origins:
        app.add_fast_routes(hot_routes)
    master, caller = require_master(services), require_caller(services)
    db = runtime.db
    app.include_router(keys_router(KeyService(db, runtime), master))
    app.include_router(users_router(UserService(db, runtime), master))
    app.include_router(budgets_router(BudgetService(db, runtime), master))
    app.include_router(pricing_router(PricingService(db, runtime, config.pricing), master, caller))
    app.include_router(usage_router(UsageService(db), master))
    app.include_router(models_router(services))
    objects = ObjectAccess(runtime.router, runtime.admission)
    limit = config.max_request_body_bytes
    files = Files(db, runtime.router, runtime.admission, objects)
    app.include_router(files_router(files, caller, limit))
    batches = Batches(config, db, runtime.admission, runtime.prices, objects)
    app.include_router(batches_router(batches, caller, limit))
    app.include_router(responses_router(runtime.responses, caller))
    app.include_router(health_router(runtime.db))
    if metrics is not None:
        metrics.set_queue_depth_source(lambda: runtime.writer.pending)
        app.include_router(metrics_router(metrics))
    app.add_middleware(RequestIds)
    if config.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_allow_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Otari-Request-ID", "Retry-After"],
        )
    _declare_generation_schema(app)
    return app


def _metrics() -> Metrics:
    # Imported only when enabled: prometheus_client costs about 1 MB per worker.
    from otari_gateway.telemetry.metrics import Metrics

    return Metrics()


def _declare_generation_schema(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = merge_generation_paths(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """The factory uvicorn workers call; the CLI passes the config path by environment."""
    # `otari serve` warned about the config's unknown keys once already.
    return create_app(load_config(os.environ.get(CONFIG_PATH_ENV), warn=False))
