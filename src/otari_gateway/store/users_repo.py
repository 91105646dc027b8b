"""Queries on ``users``: lookups, pages, and the race-free "create if missing"."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.store.models import ApiKey, User
from otari_gateway.store.types import utcnow
from otari_gateway.store.upserts import insert_for


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    """The row, soft-deleted or not; callers decide what a deleted user means to them."""
    return await session.get(User, user_id)


async def list_users(session: AsyncSession, *, skip: int, limit: int) -> Sequence[User]:
    statement = (
        select(User)
        .where(User.deleted_at.is_(None))
        .order_by(User.created_at, User.user_id)
        .offset(skip)
        .limit(limit)
    )
    return (await session.scalars(statement)).all()


async def ensure_user(
    session: AsyncSession, user_id: str, *, now: datetime | None = None
) -> tuple[User, bool]:
    """The user, inserted first when missing; also whether this call created it.

    ``ON CONFLICT DO NOTHING`` rather than select-then-insert, so two keys minted at once
    for the same new user do not collide on the primary key. A new row's ``created_at``
    and ``updated_at`` are one instant (``now``, when the caller stamps its own writes
    with it), not two reads of the clock by the column defaults.
    """
    moment = utcnow() if now is None else now
    table = User.__table__
    assert isinstance(table, Table)
    statement = (
        insert_for(session, table)
        .values(user_id=user_id, created_at=moment, updated_at=moment)
        .on_conflict_do_nothing()
    )
    result = await session.execute(statement)
    created = bool(getattr(result, "rowcount", 0))
    user = await session.get(User, user_id, populate_existing=True)
    assert user is not None
    return user, created


async def deactivate_keys(session: AsyncSession, user_id: str) -> None:
    await session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id)
        .values(is_active=False)
        .execution_options(synchronize_session=False)
    )
