"""Queries on ``model_pricing``: versioned rows keyed by (model_key, effective_at)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from otari_gateway.store.models import ModelPrice
from otari_gateway.store.upserts import insert_for


async def upsert_price(
    session: AsyncSession,
    model_key: str,
    effective_at: datetime,
    prices: Mapping[str, Decimal | None],
    *,
    now: datetime,
) -> ModelPrice:
    """Insert a version, or replace the prices of the one with the same ``effective_at``
    (which keeps its ``created_at``).

    One ``INSERT … ON CONFLICT DO UPDATE`` so two writers of the same version cannot
    race into a unique-constraint error.
    """
    table = ModelPrice.__table__
    assert isinstance(table, Table)
    insert = insert_for(session, table).values(
        id=str(uuid.uuid4()),
        model_key=model_key,
        effective_at=effective_at,
        created_at=now,
        **prices,
    )
    statement = insert.on_conflict_do_update(
        index_elements=["model_key", "effective_at"],
        set_={name: insert.excluded[name] for name in prices},
    )
    await session.execute(statement)
    row = await session.scalar(
        select(ModelPrice)
        .where(ModelPrice.model_key == model_key, ModelPrice.effective_at == effective_at)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def all_prices(session: AsyncSession) -> Sequence[ModelPrice]:
    statement = select(ModelPrice).order_by(ModelPrice.model_key, ModelPrice.effective_at.desc())
    return (await session.scalars(statement)).all()


async def current_prices(
    session: AsyncSession, now: datetime, model_key: str | None = None
) -> Sequence[ModelPrice]:
    """Per model key, the latest version already in effect at ``now``."""
    latest = select(
        ModelPrice.model_key.label("model_key"),
        func.max(ModelPrice.effective_at).label("effective_at"),
    ).where(ModelPrice.effective_at <= now)
    if model_key is not None:
        latest = latest.where(ModelPrice.model_key == model_key)
    newest = latest.group_by(ModelPrice.model_key).subquery()
    statement = (
        select(ModelPrice)
        .join(
            newest,
            (ModelPrice.model_key == newest.c.model_key)
            & (ModelPrice.effective_at == newest.c.effective_at),
        )
        .order_by(ModelPrice.model_key)
    )
    return (await session.scalars(statement)).all()


async def count_versions(session: AsyncSession, model_key: str) -> int:
    statement = select(func.count()).where(ModelPrice.model_key == model_key)
    return int(await session.scalar(statement) or 0)


async def delete_prices(session: AsyncSession, model_key: str) -> None:
    await session.execute(
        delete(ModelPrice)
        .where(ModelPrice.model_key == model_key)
        .execution_options(synchronize_session=False)
    )
