"""Budget holds in the database: atomic conditional reservations and lazy period resets.

A reservation is one transaction of conditional UPDATEs, one per budget that applies:
``reserved += hold`` only where ``spend + reserved + hold <= max_budget``. If any scope
refuses, the transaction rolls back, so a request holds against every budget or none. No
read-then-write: the condition is evaluated by the database under its row lock (PostgreSQL)
or its single writer (SQLite), which is what keeps concurrent workers and processes exact.

Settlement (``spend += cost``, ``reserved -= hold``) happens in the usage writer's batch,
in the same transaction that inserts the usage rows, so recorded spend always equals the
sum of the usage rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import ColumnElement, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, Budget, BudgetResetLog, User

RESET_ATTEMPTS = 3


async def reserve(
    db: Database,
    *,
    user_id: str,
    user_hold: Decimal,
    key_id: str | None,
    key_hold: Decimal,
) -> str | None:
    """Hold amounts against the user's and the key's budgets; the refusing scope or None."""
    try:
        async with db.transaction() as connection:
            await _hold(connection, user_hold, user_id, key_id, key_hold)
    except _Refused as refused:
        return refused.scope
    return None


class _Refused(Exception):
    """Raised inside the reservation transaction so that it rolls back as a whole."""

    def __init__(self, scope: str) -> None:
        self.scope = scope


async def _hold(
    connection: AsyncConnection,
    user_hold: Decimal,
    user_id: str,
    key_id: str | None,
    key_hold: Decimal,
) -> None:
    user_limit = (
        select(Budget.max_budget).where(Budget.budget_id == User.budget_id).scalar_subquery()
    )
    if user_hold > 0:
        result = await connection.execute(
            update(User)
            .where(User.user_id == user_id)
            .where(or_(user_limit.is_(None), User.spend + User.reserved + user_hold <= user_limit))
            .values(reserved=User.reserved + user_hold)
        )
        if result.rowcount != 1:
            raise _Refused("user")
    if key_id is not None and key_hold > 0:
        result = await connection.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .where(
                or_(
                    ApiKey.max_budget.is_(None),
                    ApiKey.spend + ApiKey.reserved + key_hold <= ApiKey.max_budget,
                )
            )
            .values(reserved=ApiKey.reserved + key_hold)
        )
        if result.rowcount != 1:
            raise _Refused("key")


async def release(
    db: Database, *, user_id: str, user_hold: Decimal, key_id: str | None, key_hold: Decimal
) -> None:
    """Give held headroom back without charging. The amount may be negative: a lease whose
    requests cost more than they held puts the difference back into ``reserved``."""
    async with db.transaction() as connection:
        if user_hold != 0:
            await connection.execute(
                update(User)
                .where(User.user_id == user_id)
                .values(reserved=User.reserved - user_hold)
            )
        if key_id is not None and key_hold != 0:
            await connection.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(reserved=ApiKey.reserved - key_hold)
            )


NextDue = Callable[[datetime], datetime | None]
"""Given the due time of the period that ended, when the new period ends."""


async def reset_user_if_due(db: Database, user_id: str, now: datetime, next_due: NextDue) -> bool:
    """Start a new budget period for the user if the current one has ended."""
    return await _reset_if_due(db, User, User.user_id == user_id, now, next_due)


async def reset_key_if_due(db: Database, key_id: str, now: datetime, next_due: NextDue) -> bool:
    """The key's own budget period, reset the same way as a user's."""
    return await _reset_if_due(db, ApiKey, ApiKey.id == key_id, now, next_due)


async def _reset_if_due(
    db: Database,
    table: type[User] | type[ApiKey],
    match: ColumnElement[bool],
    now: datetime,
    next_due: NextDue,
) -> bool:
    """Compare-and-swap on (due time, spend), so concurrent workers reset once and the
    reset log records exactly the spend that was cleared."""
    for _ in range(RESET_ATTEMPTS):
        async with db.session() as session:
            found = await session.execute(select(table).where(match))
            row = cast(User | ApiKey | None, found.scalar())
            if row is None or row.next_budget_reset_at is None or row.next_budget_reset_at > now:
                return False
            due, spent = row.next_budget_reset_at, row.spend
            following = next_due(due)
            result = await session.execute(
                update(table)
                .where(match, table.next_budget_reset_at == due, table.spend == spent)
                .values(spend=Decimal(0), budget_started_at=now, next_budget_reset_at=following)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                budget_id, key_id = (
                    (row.budget_id, None) if isinstance(row, User) else (None, row.id)
                )
                await session.execute(
                    insert(BudgetResetLog).values(
                        id=secrets.token_hex(16),
                        budget_id=budget_id,
                        user_id=row.user_id,
                        api_key_id=key_id,
                        previous_spend=spent,
                        reset_at=now,
                        next_reset_at=following,
                    )
                )
                return True
    return False
