"""``GET /v1/models`` and ``GET /v1/models/{id}``: configured models and aliases."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from otari_gateway.api.auth import require_caller
from otari_gateway.api.services import Services
from otari_gateway.errors import NotFound


class ModelItem(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelItem]


def list_models(services: Services) -> list[ModelItem]:
    created = services.started_at
    items = [
        ModelItem(id=f"{instance}:{model}", created=created, owned_by=instance)
        for instance, provider in services.config.providers.items()
        for model in provider.models
    ]
    items.extend(
        ModelItem(id=alias, created=created, owned_by=target.instance)
        for alias, target in services.runtime.router.aliases.items()
    )
    return items


def models_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["models"], dependencies=[Depends(require_caller(services))])

    @router.get("/v1/models", response_model=ModelList)
    async def get_models() -> ModelList:
        return ModelList(data=list_models(services))

    @router.get(
        "/v1/models/{model_id:path}",
        response_model=ModelItem,
        responses={404: {"description": "Unknown model"}},
    )
    async def get_model(model_id: str) -> ModelItem:
        for item in list_models(services):
            if item.id == model_id:
                return item
        raise NotFound(
            f"The model '{model_id}' does not exist", param="model", code="model_not_found"
        )

    return router
