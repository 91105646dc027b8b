"""``/v1/keys`` (master key): mint, list, read, edit, rotate and delete virtual keys.

The secret (``key``) appears only in the create and rotate responses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StrictBool
from starlette.responses import Response

from otari_gateway.api.errors import DATABASE_UNAVAILABLE
from otari_gateway.api.inputs import ManagementInput, no_nul_in_url, optional_body
from otari_gateway.api.paging import Limit, Skip
from otari_gateway.control.keys import CreatedKey, KeyPatch, KeyService, KeyView, NewKey
from otari_gateway.control.values import MAX_INT, MAX_USD, USER_ID_PATTERN, USER_ID_RULE, Page

AllowedModels = Annotated[
    list[str] | None,
    Field(
        description="null: any model; []: none; else 'instance:model', 'instance:*' or "
        "'instance:prefix*' entries"
    ),
]
Usd = Annotated[Decimal | None, Field(ge=0, le=MAX_USD, description="USD; null: uncapped")]
Seconds = Annotated[int | None, Field(gt=0, le=MAX_INT, description="Rolling period length")]
PerMinute = Annotated[int | None, Field(gt=0, le=MAX_INT, description="null: no limit")]


class KeyCreateIn(ManagementInput):
    key_name: str | None = Field(default=None, max_length=255)
    user_id: str | None = Field(
        default=None,
        pattern=USER_ID_PATTERN,
        description=f"Owner ({USER_ID_RULE}); absent: user 'default'; unknown: created; "
        "deleted: 404 until POST /v1/users re-creates it",
    )
    expires_at: datetime | None = Field(default=None, description="Future instant; naive: UTC")
    is_active: StrictBool = Field(default=True, description="false: minted already inactive")
    allowed_models: AllowedModels = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    max_budget: Usd = None
    budget_duration_sec: Seconds = None
    rpm_limit: PerMinute = None
    tpm_limit: PerMinute = None


class KeyPatchIn(ManagementInput):
    """Only the fields sent change; ``null`` clears a nullable one."""

    key_name: str | None = Field(default=None, max_length=255)
    is_active: StrictBool | None = None
    expires_at: datetime | None = None
    allowed_models: AllowedModels = None
    metadata: dict[str, Any] | None = None
    max_budget: Usd = None
    budget_duration_sec: Seconds = None
    rpm_limit: PerMinute = None
    tpm_limit: PerMinute = None


class _KeyFields(BaseModel):
    id: str
    key_prefix: str
    key_name: str | None
    user_id: str
    created_at: datetime
    expires_at: datetime | None
    is_active: bool
    allowed_models: list[str] | None
    metadata: dict[str, Any]
    max_budget: float | None
    budget_duration_sec: int | None
    spend: float
    rpm_limit: int | None
    tpm_limit: int | None


class KeyOut(_KeyFields):
    last_used_at: datetime | None


class CreatedKeyOut(_KeyFields):
    """The only response that carries the secret: store it now, it is never shown again."""

    key: str


_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown key id"}}
_INVALID: dict[int | str, dict[str, Any]] = {400: {"description": "Invalid field"}}


def keys_router(service: KeyService, require_master: Callable[..., Any]) -> APIRouter:
    router = APIRouter(
        prefix="/v1/keys",
        tags=["keys"],
        dependencies=[Depends(require_master), Depends(no_nul_in_url)],
        responses=DATABASE_UNAVAILABLE,
    )

    @router.post(
        "",
        response_model=CreatedKeyOut,
        responses={**_INVALID, 404: {"description": "The named user was deleted"}},
    )
    async def create_key(body: Annotated[KeyCreateIn, optional_body()]) -> CreatedKey:
        """Mint a key; the response is the only place its secret ever appears."""
        return await service.create(NewKey(**body.model_dump()))

    @router.get("", response_model=list[KeyOut], responses=_INVALID)
    async def list_keys(skip: Skip = 0, limit: Limit = 100) -> list[KeyView]:
        return await service.list_keys(Page(skip, limit))

    @router.get("/{key_id}", response_model=KeyOut, responses=_UNKNOWN)
    async def get_key(key_id: str) -> KeyView:
        return await service.get(key_id)

    @router.patch("/{key_id}", response_model=KeyOut, responses={**_INVALID, **_UNKNOWN})
    async def update_key(key_id: str, body: Annotated[KeyPatchIn, optional_body()]) -> KeyView:
        return await service.update(key_id, KeyPatch(**body.model_dump(exclude_unset=True)))

    @router.post("/{key_id}/rotate", response_model=CreatedKeyOut, responses=_UNKNOWN)
    async def rotate_key(key_id: str) -> CreatedKey:
        """A new secret for the same key; the old one stops working at once."""
        return await service.rotate(key_id)

    @router.delete("/{key_id}", status_code=204, response_class=Response, responses=_UNKNOWN)
    async def delete_key(key_id: str) -> Response:
        """Delete the key; its usage rows stay, with ``api_key_id`` set to null."""
        await service.delete(key_id)
        return Response(status_code=204)

    return router
