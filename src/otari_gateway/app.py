"""``create_app(config)``: wiring only — build the services, list routes and middleware once."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from otari_gateway import __version__
from otari_gateway.api.errors import EXCEPTION_HANDLERS
from otari_gateway.api.generation import generation_routes
from otari_gateway.api.health import health_router
from otari_gateway.api.models import models_router
from otari_gateway.api.openapi import merge_generation_paths
from otari_gateway.api.services import Services
from otari_gateway.config import ConfigError, GatewayConfig, load_config
from otari_gateway.pipeline.admission import Authenticator
from otari_gateway.pipeline.routing import Router
from otari_gateway.pipeline.run import Pipeline
from otari_gateway.pipeline.settle import LogSettler
from otari_gateway.providers.registry import build_providers
from otari_gateway.telemetry.logging import configure_logging

CONFIG_PATH_ENV = "OTARI_CONFIG"


def create_app(config: GatewayConfig, environ: Mapping[str, str] | None = None) -> FastAPI:
    env = os.environ if environ is None else environ
    configure_logging(config.log_level)
    if not config.master_key:
        raise ConfigError("master_key is not set (config master_key or OTARI_MASTER_KEY)")
    providers = build_providers(config, env)
    router = Router(providers, config.aliases)
    services = Services(
        config=config,
        authenticator=Authenticator(config.master_key),
        router=router,
        pipeline=Pipeline(router, LogSettler()),
        started_at=int(time.time()),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for provider in providers.values():
            await provider.start()
        try:
            yield
        finally:
            for provider in providers.values():
                await provider.aclose()

    app = FastAPI(
        title="Otari gateway",
        version=__version__,
        description="OpenAI- and Anthropic-compatible LLM gateway",
        lifespan=lifespan,
        docs_url="/docs" if config.enable_docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if config.enable_docs else None,
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    app.router.routes.extend(generation_routes(services))
    app.include_router(models_router(services))
    app.include_router(health_router())
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


def _declare_generation_schema(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = merge_generation_paths(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """The factory uvicorn workers call; the CLI passes the config path by environment."""
    return create_app(load_config(os.environ.get(CONFIG_PATH_ENV)))
