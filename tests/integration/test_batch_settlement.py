"""A batch's settlement on real SQLite and PostgreSQL: one row and one charge, however many
callers on however many engines (worker processes) race for it."""

from __future__ import annotations

from decimal import Decimal

import anyio
from sqlalchemy import delete, func, select

from otari_gateway.store import objects_repo
from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, StoredBatch, UsageLog, User
from otari_gateway.store.types import utcnow
from otari_gateway.store.usage_writer import UsageRecord
from otari_gateway.usage import Usage

COST = Decimal("0.018750")


async def _seed(db: Database) -> None:
    async with db.session() as session:
        session.add(User(user_id="u1", spend=Decimal(0), reserved=Decimal(0), metadata_={}))
        await session.flush()
        session.add(
            ApiKey(
                id="k1",
                key_hash="h" * 64,
                key_prefix="sk-otari-x",
                user_id="u1",
                spend=Decimal(0),
                reserved=Decimal(0),
                metadata_={},
            )
        )
    await objects_repo.add_batch(
        db,
        batch_id="batch_1",
        instance="openai",
        user_id="u1",
        api_key_id="k1",
        input_file_id="file-1",
        endpoint="/v1/chat/completions",
        model="gpt-4o-mini",
        upstream_object={"id": "batch_1", "object": "batch", "status": "validating"},
    )


def _record(api_key_id: str | None = "k1") -> UsageRecord:
    return UsageRecord(
        id="batch_1",
        user_id="u1",
        api_key_id=api_key_id,
        timestamp=utcnow(),
        model="gpt-4o-mini",
        provider="openai",
        endpoint="batches",
        usage=Usage(prompt_tokens=10_000, completion_tokens=4_000, cache_read_tokens=2_000),
        cost=COST,
        status="success",
        status_code=200,
        latency_ms=0,
    )


async def _totals(db: Database) -> tuple[int, Decimal, Decimal | None, bool]:
    async with db.session() as session:
        rows = (await session.execute(select(func.count()).select_from(UsageLog))).scalar_one()
        user = await session.get(User, "u1")
        key = await session.get(ApiKey, "k1")
        batch = await session.get(StoredBatch, "batch_1")
        assert user is not None and batch is not None
        return rows, user.spend, key.spend if key else None, batch.settled


def test_concurrent_settlements_bill_once(database_url: str) -> None:
    async def scenario() -> None:
        workers = [Database(database_url), Database(database_url)]
        try:
            await _seed(workers[0])
            outcomes: list[bool] = []

            async def settle(db: Database) -> None:
                outcomes.append(await objects_repo.settle_batch(db, _record()))

            # Bounded: a double insert would otherwise wait on the row lock of its twin.
            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    for index in range(10):
                        group.start_soon(settle, workers[index % 2])
            assert sorted(outcomes) == [False] * 9 + [True]
            assert await _totals(workers[0]) == (1, COST, COST, True)
        finally:
            for db in workers:
                await db.aclose()

    anyio.run(scenario)


def test_a_deleted_key_leaves_the_user_billed(database_url: str) -> None:
    async def scenario() -> None:
        db = Database(database_url)
        try:
            await _seed(db)
            async with db.session() as session:
                await session.execute(delete(ApiKey).where(ApiKey.id == "k1"))
            assert await objects_repo.settle_batch(db, _record()) is True
            assert await _totals(db) == (1, COST, None, True)
            async with db.session() as session:
                row = await session.get(UsageLog, "batch_1")
                assert row is not None and row.api_key_id is None
        finally:
            await db.aclose()

    anyio.run(scenario)
