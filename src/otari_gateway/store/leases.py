"""Budget leases in the database: headroom a process took, recorded so no crash strands it.

A lease row says how much of one user's or one key's budget a process holds (``amount``:
taken, minus what went back or was charged), how much of that its in-flight requests hold
right now (``held``, which ``/v1/users`` reports as ``reserved``), and until when the process
vouches for it (``expires_at``, renewed while it lives). The owner's ``reserved`` column is
always the sum of its leases' amounts: every statement here changes both in one
transaction, and the usage writer does the same when it charges a request.

Taking is a conditional ``UPDATE``: ``reserved += size`` only where
``spend + reserved + size <= max_budget``, evaluated by the database under its row lock
(PostgreSQL) or its single writer (SQLite), so the sum of all leases never exceeds what is
left, across workers and processes. Closing a lease deletes its row first and then gives
back what it still had, so a charge racing the close is counted once: the writer subtracts
a cost from ``reserved`` only if it still found the lease row to update.

A process that dies without closing its leases leaves rows that stop being renewed;
``reap_expired`` (run by every live process) closes them once expired.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, Budget, BudgetLease, User
from otari_gateway.store.types import Money

Kind = Literal["user", "key"]
_leases = cast(Table, BudgetLease.__table__)
REAP_BATCH = 100


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """One lease row: its id, whose budget it is taken from, and which process holds it."""

    id: str
    kind: Kind
    owner: str
    holder: str


class LeaseGone(Exception):
    """The lease row no longer exists: it expired and was reaped, or its key was deleted."""


async def take(
    db: Database, lease: LeaseRef, size: Decimal, *, expires_at: datetime, new: bool
) -> bool:
    """Add ``size`` to the lease if the budget has room; False if it does not.

    ``new`` creates the row; otherwise a missing row raises ``LeaseGone`` and nothing is taken.
    The lease row is written before the owner's, the lock order of every statement here.
    A transaction PostgreSQL chose as a deadlock's victim is tried again: admission waits
    on it, and the lock order should make that rare.
    """
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return await _take(db, lease, size, expires_at=expires_at, new=new)
        except DBAPIError as exc:
            state = str(getattr(exc.orig, "sqlstate", None) or "")
            if attempt == _ATTEMPTS or state not in _RETRIED_STATES:
                raise
    raise AssertionError("unreachable")


# Deadlock detected, serialization failure.
_RETRIED_STATES = frozenset({"40P01", "40001"})
_ATTEMPTS = 3


async def _take(
    db: Database, lease: LeaseRef, size: Decimal, *, expires_at: datetime, new: bool
) -> bool:
    try:
        async with db.transaction() as connection:
            if new:
                await connection.execute(
                    insert(_leases).values(
                        id=lease.id,
                        user_id=lease.owner if lease.kind == "user" else None,
                        api_key_id=lease.owner if lease.kind == "key" else None,
                        holder=lease.holder,
                        amount=size,
                        held=Decimal(0),
                        expires_at=expires_at,
                    )
                )
            else:
                result = await connection.execute(
                    update(_leases)
                    .where(_leases.c.id == lease.id)
                    .values(amount=_leases.c.amount + size, expires_at=expires_at)
                )
                if result.rowcount != 1:
                    raise LeaseGone(lease.id)
            if not await _reserve(connection, lease.kind, lease.owner, size):
                raise _NoRoom
    except _NoRoom:
        return False
    return True


class _NoRoom(Exception):
    """Raised inside the transaction so that the lease's growth rolls back with it."""


async def _reserve(connection: AsyncConnection, kind: Kind, owner: str, size: Decimal) -> bool:
    if kind == "user":
        limit = (
            select(Budget.max_budget).where(Budget.budget_id == User.budget_id).scalar_subquery()
        )
        statement = (
            update(User)
            .where(User.user_id == owner)
            .where(or_(limit.is_(None), User.spend + User.reserved + size <= limit))
            .values(reserved=User.reserved + size)
        )
    else:
        statement = (
            update(ApiKey)
            .where(ApiKey.id == owner)
            .where(
                or_(
                    ApiKey.max_budget.is_(None),
                    ApiKey.spend + ApiKey.reserved + size <= ApiKey.max_budget,
                )
            )
            .values(reserved=ApiKey.reserved + size)
        )
    result = await connection.execute(statement)
    return bool(result.rowcount == 1)


async def give_back(db: Database, lease: LeaseRef, amount: Decimal) -> bool:
    """Return unused headroom from a lease that stays open; False if the row is gone."""
    async with db.transaction() as connection:
        result = await connection.execute(
            update(_leases).where(_leases.c.id == lease.id).values(amount=_leases.c.amount - amount)
        )
        if result.rowcount != 1:
            return False
        await _unreserve(connection, lease.kind, lease.owner, amount)
    return True


async def renew(db: Database, lease_id: str, *, held: Decimal, expires_at: datetime) -> bool:
    """Report the lease's in-flight holds and extend it; False if the row is gone."""
    async with db.transaction() as connection:
        result = await connection.execute(
            update(_leases).where(_leases.c.id == lease_id).values(held=held, expires_at=expires_at)
        )
        return bool(result.rowcount == 1)


async def report_held(db: Database, held: Mapping[str, Decimal]) -> None:
    """What each lease's in-flight requests hold now, for many leases in one statement
    (a lease already gone is simply not updated)."""
    statement = (
        update(_leases)
        .where(_leases.c.id == bindparam("lease_id"))
        .values(held=bindparam("lease_held", type_=Money()))
    )
    async with db.transaction() as connection:
        await connection.execute(
            statement,
            [
                {"lease_id": lease_id, "lease_held": held[lease_id]}
                for lease_id in sorted(held)  # the lock order: leases in id order
            ],
        )


async def close(db: Database, lease_id: str) -> None:
    """Delete the lease and give back everything it still had."""
    async with db.transaction() as connection:
        await _close(connection, [_leases.c.id == lease_id])


async def reap_expired(db: Database, now: datetime) -> int:
    """Close leases nobody renewed (their process died); how many were closed."""
    async with db.transaction() as connection:
        expired = await connection.execute(
            select(_leases.c.id).where(_leases.c.expires_at < now).limit(REAP_BATCH)
        )
        ids = sorted(expired.scalars())
        # Re-checked in the DELETE: a lease renewed meanwhile is not reaped.
        stale = _leases.c.expires_at < now
        await _close(connection, [(_leases.c.id == lease_id) & stale for lease_id in ids])
    return len(ids)


async def _close(connection: AsyncConnection, matches: Iterable[ColumnElement[bool]]) -> None:
    """Delete the matching leases, one statement each in the order given, and then give
    back what they had: every lease row before any owner's (the lock order)."""
    owed: dict[tuple[Kind, str], Decimal] = {}
    for match in matches:
        deleted = await connection.execute(
            delete(_leases)
            .where(match)
            .returning(_leases.c.user_id, _leases.c.api_key_id, _leases.c.amount)
        )
        for user_id, key_id, amount in deleted.all():
            whose: tuple[Kind, str] = ("user", user_id) if user_id is not None else ("key", key_id)
            owed[whose] = owed.get(whose, Decimal(0)) + amount
    kinds: tuple[Kind, ...] = ("user", "key")
    for kind in kinds:
        for (owner_kind, owner), amount in sorted(owed.items()):
            if owner_kind == kind:
                await _unreserve(connection, kind, owner, amount)


async def _unreserve(connection: AsyncConnection, kind: Kind, owner: str, amount: Decimal) -> None:
    if amount == 0:
        return
    if kind == "user":
        await connection.execute(
            update(User).where(User.user_id == owner).values(reserved=User.reserved - amount)
        )
    else:
        await connection.execute(
            update(ApiKey).where(ApiKey.id == owner).values(reserved=ApiKey.reserved - amount)
        )


async def held_by_users(session: AsyncSession, user_ids: Iterable[str]) -> dict[str, Decimal]:
    """What in-flight requests hold against each user's budget, from the leases' reports."""
    ids = list(user_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(BudgetLease.user_id, type_coerce(func.sum(BudgetLease.held), Money()))
        .where(BudgetLease.user_id.in_(ids))
        .group_by(BudgetLease.user_id)
    )
    return {str(user_id): held or Decimal(0) for user_id, held in rows.all()}


async def held_by_budgets(session: AsyncSession, budget_ids: Iterable[str]) -> dict[str, Decimal]:
    """The same, summed over each budget's live users."""
    ids = list(budget_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(User.budget_id, type_coerce(func.sum(BudgetLease.held), Money()))
        .join(BudgetLease, BudgetLease.user_id == User.user_id)
        .where(User.budget_id.in_(ids), User.deleted_at.is_(None))
        .group_by(User.budget_id)
    )
    return {str(budget_id): held or Decimal(0) for budget_id, held in rows.all()}
