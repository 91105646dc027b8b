"""``/v1/budgets`` (master key): spending caps shared by users, and their reset history."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.responses import Response

from otari_gateway.api.errors import DATABASE_UNAVAILABLE
from otari_gateway.api.inputs import ManagementInput, no_nul_in_url, optional_body
from otari_gateway.api.paging import Limit, Skip
from otari_gateway.control.budgets import (
    BudgetPatch,
    BudgetService,
    BudgetView,
    NewBudget,
    ResetLogView,
)
from otari_gateway.control.values import MAX_INT, MAX_USD, Page

Usd = Annotated[Decimal | None, Field(ge=0, le=MAX_USD, description="USD per user; null: uncapped")]
Seconds = Annotated[
    int | None, Field(gt=0, le=MAX_INT, description="Rolling period; excludes reset_alignment")
]
Alignment = Annotated[
    Literal["calendar_day", "calendar_week", "calendar_month"] | None,
    Field(description="Reset at the next UTC day, ISO week or month; excludes a duration"),
]


class BudgetCreateIn(ManagementInput):
    name: str | None = Field(default=None, max_length=255)
    max_budget: Usd = None
    budget_duration_sec: Seconds = None
    reset_alignment: Alignment = None


class BudgetPatchIn(ManagementInput):
    """Only the fields sent change; the resulting period must still have one source."""

    name: str | None = Field(default=None, max_length=255)
    max_budget: Usd = None
    budget_duration_sec: Seconds = None
    reset_alignment: Alignment = None


class BudgetOut(BaseModel):
    budget_id: str
    name: str | None
    max_budget: float | None
    budget_duration_sec: int | None
    reset_alignment: str | None
    created_at: datetime
    updated_at: datetime
    user_count: int = Field(description="Live (not deleted) users on this budget")
    total_spend: float
    total_reserved: float


class ResetLogOut(BaseModel):
    id: str
    budget_id: str | None
    user_id: str | None
    api_key_id: str | None
    previous_spend: float
    reset_at: datetime
    next_reset_at: datetime | None


_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown budget id"}}
_INVALID: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid field, or both a duration and an alignment"}
}


def budgets_router(service: BudgetService, require_master: Callable[..., Any]) -> APIRouter:
    router = APIRouter(
        prefix="/v1/budgets",
        tags=["budgets"],
        dependencies=[Depends(require_master), Depends(no_nul_in_url)],
        responses=DATABASE_UNAVAILABLE,
    )

    @router.post("", response_model=BudgetOut, responses=_INVALID)
    async def create_budget(body: Annotated[BudgetCreateIn, optional_body()]) -> BudgetView:
        return await service.create(NewBudget(**body.model_dump()))

    @router.get("", response_model=list[BudgetOut], responses=_INVALID)
    async def list_budgets(skip: Skip = 0, limit: Limit = 100) -> list[BudgetView]:
        return await service.list_budgets(Page(skip, limit))

    @router.get("/{budget_id}", response_model=BudgetOut, responses=_UNKNOWN)
    async def get_budget(budget_id: str) -> BudgetView:
        return await service.get(budget_id)

    @router.patch("/{budget_id}", response_model=BudgetOut, responses={**_INVALID, **_UNKNOWN})
    async def update_budget(
        budget_id: str, body: Annotated[BudgetPatchIn, optional_body()]
    ) -> BudgetView:
        """Edit a budget; a changed period moves its users' next reset."""
        patch = BudgetPatch(**body.model_dump(exclude_unset=True))
        return await service.update(budget_id, patch)

    @router.delete(
        "/{budget_id}",
        status_code=204,
        response_class=Response,
        responses={**_UNKNOWN, 409: {"description": "Users are still assigned to it"}},
    )
    async def delete_budget(budget_id: str) -> Response:
        await service.delete(budget_id)
        return Response(status_code=204)

    @router.get(
        "/{budget_id}/reset-logs",
        response_model=list[ResetLogOut],
        responses={**_INVALID, **_UNKNOWN},
    )
    async def budget_reset_logs(
        budget_id: str, skip: Skip = 0, limit: Limit = 100
    ) -> list[ResetLogView]:
        """Per-user resets of this budget, newest first."""
        return await service.reset_logs(budget_id, Page(skip, limit))

    return router
