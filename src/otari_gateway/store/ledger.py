"""Budget periods in the database: lazy resets, once per period across every process.

(Holds against budgets live in ``store/leases.py``; charges in ``store/usage_writer.py``.)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import ColumnElement, insert, select, update

from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, BudgetResetLog, User

RESET_ATTEMPTS = 3


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
