"""``/v1/users`` (master key): create, list, read, edit and soft-delete users; their usage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StrictBool
from starlette.responses import Response

from otari_gateway.api.errors import DATABASE_UNAVAILABLE
from otari_gateway.api.inputs import ManagementInput, no_nul_in_url, optional_body
from otari_gateway.api.paging import Limit, Skip
from otari_gateway.api.usage import UsageRowOut, row_filter
from otari_gateway.control.usage import UsageFilter, UsageRowView
from otari_gateway.control.users import NewUser, UserPatch, UserService, UserView
from otari_gateway.control.values import USER_ID_PATTERN, USER_ID_RULE, Page

AllowedModels = Annotated[
    list[str] | None,
    Field(description="Default for the user's keys; null: any model; []: none"),
]


class UserCreateIn(ManagementInput):
    user_id: str = Field(pattern=USER_ID_PATTERN, description=USER_ID_RULE)
    alias: str | None = Field(default=None, max_length=255)
    budget_id: str | None = Field(default=None, description="An existing budget (404 if not)")
    blocked: StrictBool = False
    allowed_models: AllowedModels = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class UserPatchIn(ManagementInput):
    """Only the fields sent change; ``budget_id: null`` detaches the budget."""

    alias: str | None = Field(default=None, max_length=255)
    budget_id: str | None = None
    blocked: StrictBool | None = None
    allowed_models: AllowedModels = None
    metadata: dict[str, Any] | None = None


class UserOut(BaseModel):
    user_id: str
    alias: str | None
    spend: float
    reserved: float = Field(description="Sum of the holds of in-flight requests")
    budget_id: str | None
    allowed_models: list[str] | None
    budget_started_at: datetime | None
    next_budget_reset_at: datetime | None
    blocked: bool
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]


_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown or deleted user"}}
_INVALID: dict[int | str, dict[str, Any]] = {400: {"description": "Invalid field"}}


def users_router(service: UserService, require_master: Callable[..., Any]) -> APIRouter:
    router = APIRouter(
        prefix="/v1/users",
        tags=["users"],
        dependencies=[Depends(require_master), Depends(no_nul_in_url)],
        responses=DATABASE_UNAVAILABLE,
    )

    @router.post(
        "",
        response_model=UserOut,
        responses={
            **_INVALID,
            404: {"description": "Unknown budget_id"},
            409: {"description": "The user already exists"},
        },
    )
    async def create_user(body: Annotated[UserCreateIn, optional_body()]) -> UserView:
        """Create a user (a soft-deleted id is revived, with zero spend)."""
        return await service.create(NewUser(**body.model_dump()))

    @router.get("", response_model=list[UserOut], responses=_INVALID)
    async def list_users(skip: Skip = 0, limit: Limit = 100) -> list[UserView]:
        return await service.list_users(Page(skip, limit))

    @router.get("/{user_id}", response_model=UserOut, responses=_UNKNOWN)
    async def get_user(user_id: str) -> UserView:
        return await service.get(user_id)

    @router.patch(
        "/{user_id}",
        response_model=UserOut,
        responses={**_INVALID, 404: {"description": "Unknown user or budget_id"}},
    )
    async def update_user(user_id: str, body: Annotated[UserPatchIn, optional_body()]) -> UserView:
        """Edit a user; assigning a budget starts its period now."""
        return await service.update(user_id, UserPatch(**body.model_dump(exclude_unset=True)))

    @router.delete("/{user_id}", status_code=204, response_class=Response, responses=_UNKNOWN)
    async def delete_user(user_id: str) -> Response:
        """Soft delete: the row and its usage stay; the user's keys go inactive."""
        await service.delete(user_id)
        return Response(status_code=204)

    @router.get(
        "/{user_id}/usage",
        response_model=list[UsageRowOut],
        responses={**_INVALID, **_UNKNOWN},
    )
    async def user_usage(
        user_id: str,
        where: Annotated[UsageFilter, Depends(row_filter)],
        skip: Skip = 0,
        limit: Limit = 100,
    ) -> list[UsageRowView]:
        """This user's usage rows, newest first (the filters of ``/v1/usage``)."""
        return await service.usage(user_id, where, Page(skip, limit))

    return router
