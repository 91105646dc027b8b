"""Gateway-wide generated values, written once: the first writer wins, everyone reads it."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, select

from otari_gateway.store.database import Database
from otari_gateway.store.models import GatewaySetting
from otari_gateway.store.types import utcnow
from otari_gateway.store.upserts import insert_for


async def get_setting(db: Database, name: str) -> str | None:
    async with db.session() as session:
        found = await session.execute(
            select(GatewaySetting.value).where(GatewaySetting.name == name)
        )
        return found.scalar()


async def set_once(db: Database, name: str, value: str) -> bool:
    """Store ``value`` unless ``name`` is already set; True if this call stored it."""
    table = cast(Table, GatewaySetting.__table__)
    async with db.session() as session:
        statement = insert_for(session, table).values(name=name, value=value, created_at=utcnow())
        result = await session.execute(statement.on_conflict_do_nothing())
        return bool(getattr(result, "rowcount", 0))
