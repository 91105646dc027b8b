"""``/v1/pricing``: managed, versioned model prices.

Reads are open to any valid key (``require_caller``); writes need the master key.
Model keys contain ``:`` and may contain ``/``, hence the ``:path`` converter.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from otari_gateway.api.errors import DATABASE_UNAVAILABLE
from otari_gateway.api.inputs import ManagementInput, no_nul_in_url, optional_body
from otari_gateway.control.pricing import NewPrice, PriceView, PricingService
from otari_gateway.control.values import MAX_USD

Rate = Annotated[Decimal | None, Field(ge=0, le=MAX_USD)]


class PriceIn(ManagementInput):
    """At least one price field is required."""

    model_key: str = Field(min_length=3, max_length=255, description="'provider:model'")
    input_price_per_million: Rate = None
    output_price_per_million: Rate = None
    cache_read_price_per_million: Rate = None
    cache_write_price_per_million: Rate = None
    price_per_image: Rate = None
    price_per_request: Rate = None
    price_per_audio_second: Rate = None
    price_per_million_characters: Rate = None
    effective_at: datetime | None = Field(
        default=None,
        description="When this version applies (default now; naive: UTC); the same instant "
        "again replaces that version",
    )


class PriceOut(BaseModel):
    id: str
    model_key: str
    input_price_per_million: float | None
    output_price_per_million: float | None
    cache_read_price_per_million: float | None
    cache_write_price_per_million: float | None
    price_per_image: float | None
    price_per_request: float | None
    price_per_audio_second: float | None
    price_per_million_characters: float | None
    effective_at: datetime
    created_at: datetime
    source: Literal["api", "config"] = Field(
        description="api: managed through /v1/pricing; config: the config file's pricing: "
        "block (read-only here; a managed row for the same model takes precedence)"
    )


_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "No price for that model"}}


def pricing_router(
    service: PricingService,
    require_master: Callable[..., Any],
    require_caller: Callable[..., Any],
) -> APIRouter:
    router = APIRouter(
        prefix="/v1/pricing",
        tags=["pricing"],
        dependencies=[Depends(no_nul_in_url)],
        responses=DATABASE_UNAVAILABLE,
    )
    master = [Depends(require_master)]
    caller = [Depends(require_caller)]

    @router.post(
        "",
        response_model=PriceOut,
        dependencies=master,
        responses={400: {"description": "Bad model_key, negative or no price"}},
    )
    async def set_price(body: Annotated[PriceIn, optional_body()]) -> PriceView:
        """Add a price version (or replace the one with the same ``effective_at``)."""
        return await service.set_price(NewPrice(**body.model_dump()))

    @router.get("", response_model=list[PriceOut], dependencies=caller)
    async def list_prices(
        all_versions: Annotated[
            bool, Query(alias="all", description="Every version, scheduled ones included")
        ] = False,
    ) -> list[PriceView]:
        """The version in effect for each priced model."""
        return await service.list_prices(all_versions=all_versions)

    @router.get(
        "/{model_key:path}", response_model=PriceOut, dependencies=caller, responses=_UNKNOWN
    )
    async def get_price(model_key: str) -> PriceView:
        """The version of this model's price in effect now."""
        return await service.get(model_key)

    @router.delete(
        "/{model_key:path}",
        status_code=204,
        response_class=Response,
        dependencies=master,
        responses={
            **_UNKNOWN,
            409: {"description": "The price comes from the config file: edit the file"},
        },
    )
    async def delete_price(model_key: str) -> Response:
        """Delete every version of this model's price."""
        await service.delete(model_key)
        return Response(status_code=204)

    return router
