"""``GET /v1/models`` and ``GET /v1/models/{id}``: the catalog of ``pipeline/model_catalog``.

``?include_errors=true`` (master key only) adds an ``errors`` list naming the instances
whose upstream could not be listed; without it the shape is exactly OpenAI's.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from otari_gateway.api.auth import require_caller
from otari_gateway.api.services import Services
from otari_gateway.errors import NotFound, PermissionDenied
from otari_gateway.pipeline.model_catalog import ListedModel
from otari_gateway.pipeline.request import Caller


class ModelPricing(BaseModel):
    """USD per unit, the fields of a ``/v1/pricing`` entry; absent meters are unpriced."""

    input_price_per_million: float | None = None
    output_price_per_million: float | None = None
    cache_read_price_per_million: float | None = None
    cache_write_price_per_million: float | None = None
    price_per_image: float | None = None
    price_per_request: float | None = None
    price_per_audio_second: float | None = None
    price_per_million_characters: float | None = None


class ModelItem(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    pricing: ModelPricing | None = None


class DiscoveryError(BaseModel):
    instance: str
    message: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelItem]
    errors: list[DiscoveryError] | None = None


def _item(model: ListedModel) -> ModelItem:
    return ModelItem(
        id=model.id, created=model.created, owned_by=model.owned_by, pricing=_pricing(model)
    )


def _pricing(model: ListedModel) -> ModelPricing | None:
    price = model.price
    if price is None:
        return None
    rates = {
        "input_price_per_million": price.input_per_million,
        "output_price_per_million": price.output_per_million,
        "cache_read_price_per_million": price.cache_read_per_million,
        "cache_write_price_per_million": price.cache_write_per_million,
        "price_per_image": price.per_image,
        "price_per_request": price.per_request,
        "price_per_audio_second": price.per_audio_second,
        "price_per_million_characters": price.per_million_characters,
    }
    if all(rate is None for rate in rates.values()):
        return None
    return ModelPricing(**{name: None if r is None else float(r) for name, r in rates.items()})


def models_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["models"])
    caller_dependency = Depends(require_caller(services))

    @router.get("/v1/models", response_model=ModelList, response_model_exclude_none=True)
    async def get_models(
        caller: Caller = caller_dependency,
        include_errors: bool = Query(
            False, description="add the instances whose model listing failed (master key)"
        ),
    ) -> ModelList:
        if include_errors and not caller.is_master:
            raise PermissionDenied(
                "include_errors requires the master key", code="master_key_required"
            )
        listing = await services.runtime.models.listing(services.started_at)
        errors = None
        if include_errors:
            errors = [
                DiscoveryError(instance=instance, message=message)
                for instance, message in listing.failures.items()
            ]
        return ModelList(data=[_item(model) for model in listing.models], errors=errors)

    @router.get(
        "/v1/models/{model_id:path}",
        response_model=ModelItem,
        response_model_exclude_none=True,
        responses={404: {"description": "Unknown model"}},
        dependencies=[caller_dependency],
    )
    async def get_model(model_id: str) -> ModelItem:
        found = await services.runtime.models.find(model_id, services.started_at)
        if found is None:
            raise NotFound(
                f"The model '{model_id}' does not exist", param="model", code="model_not_found"
            )
        return _item(found)

    return router
