"""Budgets: spending caps shared by the users assigned to them.

A budget resets on a rolling ``budget_duration_sec`` or on a UTC calendar boundary
(``reset_alignment``), never both, or not at all. ``max_budget`` applies per user; the
read model adds how many live users it caps and their summed spend and holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from otari_gateway.billing.periods import ResetAlignment, next_reset
from otari_gateway.control.changes import ChangeListener
from otari_gateway.control.outage import available
from otari_gateway.control.values import UNSET, Page, Unset, new_id
from otari_gateway.errors import Conflict, InvalidRequest, NotFound
from otari_gateway.store import budgets_repo
from otari_gateway.store.budgets_repo import BudgetTotals
from otari_gateway.store.database import Database
from otari_gateway.store.models import Budget, BudgetResetLog, User
from otari_gateway.store.types import to_money, utcnow


@dataclass(frozen=True, slots=True)
class BudgetView:
    budget_id: str
    name: str | None
    max_budget: Decimal | None
    budget_duration_sec: int | None
    reset_alignment: str | None
    created_at: datetime
    updated_at: datetime
    user_count: int
    total_spend: Decimal
    total_reserved: Decimal


@dataclass(frozen=True, slots=True)
class NewBudget:
    name: str | None = None
    max_budget: Decimal | None = None
    budget_duration_sec: int | None = None
    reset_alignment: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetPatch:
    """Fields left ``UNSET`` are untouched; ``None`` clears (``max_budget=None``: uncapped)."""

    name: str | Unset | None = UNSET
    max_budget: Decimal | Unset | None = UNSET
    budget_duration_sec: int | Unset | None = UNSET
    reset_alignment: str | Unset | None = UNSET


@dataclass(frozen=True, slots=True)
class ResetLogView:
    id: str
    budget_id: str | None
    user_id: str | None
    api_key_id: str | None
    previous_spend: Decimal
    reset_at: datetime
    next_reset_at: datetime | None


def _view(budget: Budget, totals: BudgetTotals) -> BudgetView:
    return BudgetView(
        budget_id=budget.budget_id,
        name=budget.name,
        max_budget=budget.max_budget,
        budget_duration_sec=budget.budget_duration_sec,
        reset_alignment=budget.reset_alignment,
        created_at=budget.created_at,
        updated_at=budget.updated_at,
        user_count=totals.user_count,
        total_spend=totals.total_spend,
        total_reserved=totals.total_reserved,
    )


def _log_view(log: BudgetResetLog) -> ResetLogView:
    return ResetLogView(
        id=log.id,
        budget_id=log.budget_id,
        user_id=log.user_id,
        api_key_id=log.api_key_id,
        previous_spend=log.previous_spend,
        reset_at=log.reset_at,
        next_reset_at=log.next_reset_at,
    )


def _not_found(budget_id: str) -> NotFound:
    return NotFound(f"Budget with id '{budget_id}' not found", param="budget_id")


def _found(budget: Budget | None, budget_id: str) -> Budget:
    if budget is None:
        raise _not_found(budget_id)
    return budget


def _money(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    if value < 0:
        raise InvalidRequest("max_budget must be at least 0", param="max_budget")
    return to_money(value)


def _cadence(duration: int | None, alignment: str | None) -> tuple[int | None, str | None]:
    """The one period source a budget may have, validated."""
    if duration is not None and alignment is not None:
        raise InvalidRequest(
            "A budget resets on budget_duration_sec or on reset_alignment, not both",
            param="reset_alignment",
        )
    if duration is not None and duration <= 0:
        raise InvalidRequest("budget_duration_sec must be positive", param="budget_duration_sec")
    if alignment is not None and alignment not in set(ResetAlignment):
        choices = ", ".join(ResetAlignment)
        raise InvalidRequest(f"reset_alignment must be one of {choices}", param="reset_alignment")
    return duration, alignment


def _patched_cadence(budget: Budget, patch: BudgetPatch) -> tuple[int | None, str | None]:
    """The pair the row ends up with must be valid, so an omitted field keeps its value."""
    duration = patch.budget_duration_sec
    alignment = patch.reset_alignment
    return _cadence(
        budget.budget_duration_sec if isinstance(duration, Unset) else duration,
        budget.reset_alignment if isinstance(alignment, Unset) else alignment,
    )


def _retime(user: User, budget: Budget, now: datetime) -> None:
    """A changed cadence moves each user's next reset; spend already counted stays."""
    if user.budget_started_at is None:
        user.budget_started_at = now
    user.next_budget_reset_at = next_reset(
        now, duration_sec=budget.budget_duration_sec, alignment=budget.reset_alignment
    )


class BudgetService:
    def __init__(self, db: Database, changes: ChangeListener) -> None:
        self._db = db
        self._changes = changes

    async def create(self, spec: NewBudget) -> BudgetView:
        now = utcnow()
        duration, alignment = _cadence(spec.budget_duration_sec, spec.reset_alignment)
        budget = Budget(
            budget_id=new_id(),
            name=spec.name,
            max_budget=_money(spec.max_budget),
            budget_duration_sec=duration,
            reset_alignment=alignment,
            created_at=now,
            updated_at=now,
        )
        async with available(self._db.session()) as session:
            budgets_repo.add_budget(session, budget)
            await session.flush()
            # Nothing can reference a budget that did not exist: no cache to drop.
            return _view(budget, BudgetTotals())

    async def list_budgets(self, page: Page) -> list[BudgetView]:
        async with available(self._db.session()) as session:
            budgets = await budgets_repo.list_budgets(session, skip=page.skip, limit=page.limit)
            totals = await budgets_repo.totals(session, (b.budget_id for b in budgets))
            return [_view(b, totals.get(b.budget_id, BudgetTotals())) for b in budgets]

    async def get(self, budget_id: str) -> BudgetView:
        async with available(self._db.session()) as session:
            budget = _found(await budgets_repo.get_budget(session, budget_id), budget_id)
            totals = await budgets_repo.totals(session, [budget_id])
            return _view(budget, totals.get(budget_id, BudgetTotals()))

    async def update(self, budget_id: str, patch: BudgetPatch) -> BudgetView:
        now = utcnow()
        async with available(self._db.session()) as session:
            budget = _found(await budgets_repo.get_budget(session, budget_id), budget_id)
            if not isinstance(patch.name, Unset):
                budget.name = patch.name
            if not isinstance(patch.max_budget, Unset):
                budget.max_budget = _money(patch.max_budget)
            cadence = _patched_cadence(budget, patch)
            if cadence != (budget.budget_duration_sec, budget.reset_alignment):
                budget.budget_duration_sec, budget.reset_alignment = cadence
                for user in await budgets_repo.live_users_on(session, budget_id):
                    _retime(user, budget, now)
            budget.updated_at = now
            await session.flush()
            totals = await budgets_repo.totals(session, [budget_id])
            view = _view(budget, totals.get(budget_id, BudgetTotals()))
        self._changes.users_changed()
        return view

    async def delete(self, budget_id: str) -> None:
        async with available(self._db.session()) as session:
            _found(await budgets_repo.get_budget(session, budget_id), budget_id)
            totals = (await budgets_repo.totals(session, [budget_id])).get(budget_id)
            users = totals.user_count if totals else 0
            if users or not await budgets_repo.delete_budget(session, budget_id):
                raise Conflict(
                    f"Budget '{budget_id}' is assigned to {users or 'at least one'} user(s); "
                    "reassign them before deleting it",
                    param="budget_id",
                )
        self._changes.users_changed()

    async def reset_logs(self, budget_id: str, page: Page) -> list[ResetLogView]:
        async with available(self._db.session()) as session:
            _found(await budgets_repo.get_budget(session, budget_id), budget_id)
            logs = await budgets_repo.reset_logs(
                session, budget_id, skip=page.skip, limit=page.limit
            )
            return [_log_view(log) for log in logs]
