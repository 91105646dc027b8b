"""Ownership of upstream files, batches and stored responses; a batch's once-only settlement.

They live at the upstream; these rows say which user each belongs to, on which provider
instance, and (files and batches) keep the upstream's object as last seen so listings need
no upstream call. Pages are newest first by default, keyed by ``(created_at, id)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from otari_gateway.store.database import Database
from otari_gateway.store.models import StoredBatch, StoredFile, StoredResponse
from otari_gateway.store.types import utcnow
from otari_gateway.store.upserts import insert_for
from otari_gateway.store.usage_writer import UsageRecord, insert_and_charge

_batches = cast(Table, StoredBatch.__table__)
_responses = cast(Table, StoredResponse.__table__)


@dataclass(frozen=True, slots=True)
class FileRow:
    id: str
    instance: str
    purpose: str
    model: str | None
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: str
    instance: str
    user_id: str
    api_key_id: str | None
    model: str
    settled: bool
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    objects: list[dict[str, Any]]
    has_more: bool


def _file(row: StoredFile) -> FileRow:
    return FileRow(row.id, row.instance, row.purpose, row.model, row.object)


def _batch(row: StoredBatch) -> BatchRow:
    return BatchRow(
        row.id, row.instance, row.user_id, row.api_key_id, row.model, row.settled, row.object
    )


async def add_file(
    db: Database,
    *,
    file_id: str,
    instance: str,
    user_id: str,
    purpose: str,
    model: str | None,
    upstream_object: dict[str, Any],
) -> None:
    async with db.session() as session:
        session.add(
            StoredFile(
                id=file_id,
                instance=instance,
                user_id=user_id,
                purpose=purpose,
                model=model,
                object=upstream_object,
                created_at=utcnow(),
            )
        )


async def adopt_file(
    db: Database, *, file_id: str, instance: str, user_id: str, upstream_object: dict[str, Any]
) -> None:
    """Record a file the upstream made for a user (a batch's output), unless known already."""
    async with db.session() as session:
        table = cast(Table, StoredFile.__table__)
        purpose = upstream_object.get("purpose")
        statement = (
            insert_for(session, table)
            .values(
                id=file_id,
                instance=instance,
                user_id=user_id,
                purpose=purpose if isinstance(purpose, str) else "batch_output",
                model=None,
                object=upstream_object,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
        await session.execute(statement)


async def file_of(db: Database, file_id: str, user_id: str) -> FileRow | None:
    """The file when it belongs to ``user_id``; anyone else's is as good as absent."""
    async with db.session() as session:
        row = await session.get(StoredFile, file_id)
        return _file(row) if row is not None and row.user_id == user_id else None


async def known_file_ids(db: Database, ids: list[str]) -> set[str]:
    async with db.session() as session:
        found = await session.scalars(select(StoredFile.id).where(StoredFile.id.in_(ids)))
        return set(found)


async def delete_file(db: Database, file_id: str) -> None:
    async with db.session() as session:
        await session.execute(delete(StoredFile).where(StoredFile.id == file_id))


async def _page(
    session: AsyncSession,
    model: type[StoredFile] | type[StoredBatch],
    user_id: str,
    *,
    after: str | None,
    limit: int,
    newest_first: bool,
    purpose: str | None = None,
) -> Page:
    created: InstrumentedAttribute[datetime] = model.created_at
    ident: InstrumentedAttribute[str] = model.id
    statement = select(model).where(model.user_id == user_id)
    if purpose is not None and model is StoredFile:
        statement = statement.where(StoredFile.purpose == purpose)
    if after is not None:
        anchor: StoredFile | StoredBatch | None = await session.get(model, after)
        if anchor is not None and anchor.user_id == user_id:
            at, key = anchor.created_at, anchor.id
            if newest_first:
                beyond = or_(created < at, and_(created == at, ident < key))
            else:
                beyond = or_(created > at, and_(created == at, ident > key))
            statement = statement.where(beyond)
    order = (created.desc(), ident.desc()) if newest_first else (created.asc(), ident.asc())
    found = await session.scalars(statement.order_by(*order).limit(limit + 1))
    rows = cast(list[StoredFile | StoredBatch], list(found.all()))
    return Page([row.object for row in rows[:limit]], len(rows) > limit)


async def list_files(
    db: Database,
    user_id: str,
    *,
    purpose: str | None,
    after: str | None,
    limit: int,
    newest_first: bool,
) -> Page:
    async with db.session() as session:
        return await _page(
            session,
            StoredFile,
            user_id,
            after=after,
            limit=limit,
            newest_first=newest_first,
            purpose=purpose,
        )


async def add_response(db: Database, *, response_id: str, instance: str, user_id: str) -> None:
    """Record a stored response. An id seen before names the new response: an upstream
    whose ids are not unique for good (a counter that restarts) reused it, and what it
    holds under that id now is this one."""
    async with db.session() as session:
        owner = {"instance": instance, "user_id": user_id, "created_at": utcnow()}
        statement = (
            insert_for(session, _responses)
            .values(id=response_id, **owner)
            .on_conflict_do_update(index_elements=[_responses.c.id], set_=owner)
        )
        await session.execute(statement)


async def response_instance(db: Database, response_id: str, user_id: str) -> str | None:
    """The instance holding the response when it belongs to ``user_id``, else None."""
    async with db.session() as session:
        row = await session.get(StoredResponse, response_id)
        return row.instance if row is not None and row.user_id == user_id else None


async def delete_response(db: Database, response_id: str) -> None:
    async with db.session() as session:
        await session.execute(delete(StoredResponse).where(StoredResponse.id == response_id))


async def add_batch(
    db: Database,
    *,
    batch_id: str,
    instance: str,
    user_id: str,
    api_key_id: str | None,
    input_file_id: str,
    endpoint: str,
    model: str,
    upstream_object: dict[str, Any],
) -> None:
    async with db.session() as session:
        session.add(
            StoredBatch(
                id=batch_id,
                instance=instance,
                user_id=user_id,
                api_key_id=api_key_id,
                input_file_id=input_file_id,
                endpoint=endpoint,
                model=model,
                object=upstream_object,
                settled=False,
                created_at=utcnow(),
            )
        )


async def batch_of(db: Database, batch_id: str, user_id: str) -> BatchRow | None:
    async with db.session() as session:
        row = await session.get(StoredBatch, batch_id)
        return _batch(row) if row is not None and row.user_id == user_id else None


async def save_batch_object(db: Database, batch_id: str, upstream_object: dict[str, Any]) -> None:
    async with db.session() as session:
        await session.execute(
            update(StoredBatch).where(StoredBatch.id == batch_id).values(object=upstream_object)
        )


async def list_batches(db: Database, user_id: str, *, after: str | None, limit: int) -> Page:
    async with db.session() as session:
        return await _page(
            session, StoredBatch, user_id, after=after, limit=limit, newest_first=True
        )


async def settle_batch(db: Database, record: UsageRecord) -> bool:
    """Flip the batch's ``settled`` flag and write its usage row and charge, in ONE
    transaction; False (nothing written) when it was settled already.

    The conditional UPDATE is what makes concurrent retrieves, on any number of workers,
    bill once: on PostgreSQL the second UPDATE waits for the first transaction and then
    matches no row; SQLite serialises writers. Writing the row in the same transaction
    (rather than queueing it for the usage writer) means a crash cannot leave the flag
    set and the charge lost.
    """
    try:
        return await _settle(db, record)
    except IntegrityError:
        # The key that created the batch was deleted meanwhile: bill the user alone.
        return await _settle(db, replace(record, api_key_id=None))


async def _settle(db: Database, record: UsageRecord) -> bool:
    async with db.transaction() as connection:
        flipped = await connection.execute(
            update(_batches)
            .where(_batches.c.id == record.id, _batches.c.settled.is_(False))
            .values(settled=True)
        )
        if flipped.rowcount != 1:
            return False
        await insert_and_charge(connection, [record], [record.row()])
        return True
