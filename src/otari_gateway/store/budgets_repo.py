"""Queries on ``budgets`` and ``budget_reset_logs``, and the per-budget user roll-up."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import delete, func, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.store.leases import held_by_budgets
from otari_gateway.store.models import Budget, BudgetResetLog, User
from otari_gateway.store.types import Money

ZERO = Decimal("0")


@dataclass(frozen=True, slots=True)
class BudgetTotals:
    """How many live users a budget caps, and their summed spend and holds."""

    user_count: int = 0
    total_spend: Decimal = ZERO
    total_reserved: Decimal = ZERO


async def get_budget(session: AsyncSession, budget_id: str) -> Budget | None:
    return await session.get(Budget, budget_id)


async def list_budgets(session: AsyncSession, *, skip: int, limit: int) -> Sequence[Budget]:
    statement = (
        select(Budget).order_by(Budget.created_at, Budget.budget_id).offset(skip).limit(limit)
    )
    return (await session.scalars(statement)).all()


def add_budget(session: AsyncSession, budget: Budget) -> None:
    session.add(budget)


async def totals(session: AsyncSession, budget_ids: Iterable[str]) -> dict[str, BudgetTotals]:
    """One grouped query for a whole page of budgets; soft-deleted users do not count.

    The sums are coerced to ``Money`` so SQLite's integer micro-dollars come back as exact
    decimals (and PostgreSQL's numeric stays numeric), never through a float.
    """
    ids = list(budget_ids)
    if not ids:
        return {}
    statement = (
        select(
            User.budget_id,
            func.count(),
            type_coerce(func.sum(User.spend), Money()),
        )
        .where(User.budget_id.in_(ids), User.deleted_at.is_(None))
        .group_by(User.budget_id)
    )
    rows = (await session.execute(statement)).all()
    held = await held_by_budgets(session, ids)
    return {
        str(budget_id): BudgetTotals(int(count), spend or ZERO, held.get(str(budget_id), ZERO))
        for budget_id, count, spend in rows
    }


async def live_users_on(session: AsyncSession, budget_id: str) -> Sequence[User]:
    statement = select(User).where(User.budget_id == budget_id, User.deleted_at.is_(None))
    return (await session.scalars(statement)).all()


async def delete_budget(session: AsyncSession, budget_id: str) -> bool:
    """Detach soft-deleted users (the FK is RESTRICT and they still name it), then delete.

    False when a live user was assigned meanwhile and the foreign key refused the delete;
    the transaction is then unusable and the caller must let it roll back.
    """
    await session.execute(
        update(User)
        .where(User.budget_id == budget_id, User.deleted_at.is_not(None))
        .values(budget_id=None, budget_started_at=None, next_budget_reset_at=None)
        .execution_options(synchronize_session=False)
    )
    try:
        await session.execute(
            delete(Budget)
            .where(Budget.budget_id == budget_id)
            .execution_options(synchronize_session=False)
        )
    except IntegrityError:
        return False
    return True


async def reset_logs(
    session: AsyncSession, budget_id: str, *, skip: int, limit: int
) -> Sequence[BudgetResetLog]:
    statement = (
        select(BudgetResetLog)
        .where(BudgetResetLog.budget_id == budget_id)
        .order_by(BudgetResetLog.reset_at.desc(), BudgetResetLog.id.desc())
        .offset(skip)
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


def add_reset_log(session: AsyncSession, log: BudgetResetLog) -> None:
    session.add(log)
