"""Queries on ``api_keys``: by id, by secret hash, pages, and deletion."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.store.models import ApiKey, BudgetLease


async def get_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def find_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))


async def list_keys(session: AsyncSession, *, skip: int, limit: int) -> Sequence[ApiKey]:
    statement = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).offset(skip).limit(limit)
    return (await session.scalars(statement)).all()


def add_key(session: AsyncSession, key: ApiKey) -> None:
    session.add(key)


async def delete_key(session: AsyncSession, key_id: str) -> None:
    """A plain DELETE: the database sets ``usage_logs.api_key_id`` to NULL (ON DELETE SET NULL)
    and deletes the key's budget leases (CASCADE).

    Core, not ``session.delete``, so the ORM never tries to manage the usage rows itself;
    on SQLite this relies on ``PRAGMA foreign_keys=ON``, which ``store/engine.py`` sets.
    The leases are locked first, in id order: the cascade would lock them after the key,
    against the lease-then-owner order of every other statement (``store/leases.py``).
    """
    await session.execute(
        select(BudgetLease.id)
        .where(BudgetLease.api_key_id == key_id)
        .order_by(BudgetLease.id)
        .with_for_update()
    )
    await session.execute(
        delete(ApiKey).where(ApiKey.id == key_id).execution_options(synchronize_session=False)
    )
