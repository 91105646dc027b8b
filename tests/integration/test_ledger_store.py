"""The ledger on real SQLite and PostgreSQL: holds, settlement batches, period resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anyio
import pytest
from sqlalchemy import func, select

from otari_gateway.billing.ledger import LEASE_REQUESTS, Ledger
from otari_gateway.billing.periods import advance
from otari_gateway.errors import PermissionDenied
from otari_gateway.store import ledger
from otari_gateway.store.access import UserRecord
from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, Budget, BudgetResetLog, UsageLog, User
from otari_gateway.store.usage_writer import UsageRecord, UsageWriter, write_batch
from otari_gateway.usage import Usage

D = Decimal


def _next(duration: int | None, alignment: str | None, now: datetime) -> ledger.NextDue:
    return lambda due: advance(due, now, duration_sec=duration, alignment=alignment)


async def _seed(
    db: Database,
    *,
    max_budget: str | None,
    key_budget: str | None = None,
    due: datetime | None = None,
) -> None:
    async with db.session() as session:
        session.add(
            Budget(
                budget_id="b1",
                max_budget=None if max_budget is None else D(max_budget),
                budget_duration_sec=3600,
            )
        )
        await session.flush()
        session.add(
            User(
                user_id="u1",
                budget_id="b1",
                spend=D(0),
                reserved=D(0),
                next_budget_reset_at=due,
                metadata_={},
            )
        )
        await session.flush()
        session.add(
            ApiKey(
                id="k1",
                key_hash="h" * 64,
                key_prefix="sk-otari-xx",
                user_id="u1",
                max_budget=None if key_budget is None else D(key_budget),
                metadata_={},
                spend=D(0),
                reserved=D(0),
            )
        )


async def _user(db: Database) -> User:
    async with db.session() as session:
        user = await session.get(User, "u1")
        assert user is not None
        return user


async def _key(db: Database) -> ApiKey:
    async with db.session() as session:
        key = await session.get(ApiKey, "k1")
        assert key is not None
        return key


def _record(index: int, cost: str, hold: str) -> UsageRecord:
    return UsageRecord(
        id=f"r{index}",
        user_id="u1",
        api_key_id="k1",
        timestamp=datetime.now(UTC),
        model="m",
        provider="p",
        endpoint="chat",
        usage=Usage(prompt_tokens=3, completion_tokens=2),
        cost=D(cost),
        status="success",
        status_code=200,
        latency_ms=5,
        user_hold=D(hold),
        key_hold=D(hold),
    )


async def test_holds_are_all_or_nothing(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget="1.00", key_budget="0.50")
        ok = await ledger.reserve(
            db, user_id="u1", user_hold=D("0.40"), key_id="k1", key_hold=D("0.40")
        )
        assert ok is None
        refused = await ledger.reserve(
            db, user_id="u1", user_hold=D("0.20"), key_id="k1", key_hold=D("0.20")
        )
        assert refused == "key"
        assert (await _user(db)).reserved == D("0.40")
        assert (await _user(db)).reserved == D("0.400000")
        refused = await ledger.reserve(
            db, user_id="u1", user_hold=D("0.61"), key_id=None, key_hold=D(0)
        )
        assert refused == "user"
    finally:
        await db.aclose()


async def test_concurrent_holds_never_exceed_budget(database_url: str) -> None:
    db = Database(database_url)
    granted = 0
    try:
        await _seed(db, max_budget="0.000010")

        async def one() -> None:
            nonlocal granted
            if (
                await ledger.reserve(
                    db, user_id="u1", user_hold=D("0.000001"), key_id=None, key_hold=D(0)
                )
                is None
            ):
                granted += 1

        async with anyio.create_task_group() as group:
            for _ in range(40):
                group.start_soon(one)
        assert granted == 10
        assert (await _user(db)).reserved == D("0.000010")
    finally:
        await db.aclose()


async def test_writer_settles_exactly_in_batches(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget=None)
        writer = UsageWriter(db, flush_interval=0.05, batch_size=7)
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            for index in range(30):
                await writer.submit(_record(index, "0.000001", "0.000005"))
            await writer.aclose()
        user, key = await _user(db), await _key(db)
        assert user.spend == D("0.000030")
        assert key.spend == D("0.000030")
        assert user.reserved == D("-0.000150")  # nothing was reserved in this test
        assert key.last_used_at is not None and key.last_used_at.tzinfo is not None
        async with db.session() as session:
            total = (await session.execute(select(func.count()).select_from(UsageLog))).scalar_one()
        assert total == 30
    finally:
        await db.aclose()


async def test_rows_of_a_deleted_key_survive(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget=None)
        async with db.session() as session:
            key = await session.get(ApiKey, "k1")
            await session.delete(key)
        await write_batch(db, [_record(1, "0.000002", "0")])
        async with db.session() as session:
            row = await session.get(UsageLog, "r1")
            assert row is not None and row.api_key_id is None
    finally:
        await db.aclose()


async def test_lazy_reset_runs_once_and_logs_cleared_spend(database_url: str) -> None:
    db = Database(database_url)
    due = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    try:
        await _seed(db, max_budget="5", due=due)
        await write_batch(db, [_record(1, "1.250000", "0")])
        now = due + timedelta(hours=2, minutes=30)
        results = []

        async def reset() -> None:
            results.append(await ledger.reset_user_if_due(db, "u1", now, _next(3600, None, now)))

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(reset)
        assert results.count(True) == 1
        user = await _user(db)
        assert user.spend == D(0)
        assert user.next_budget_reset_at == due + timedelta(hours=3)
        async with db.session() as session:
            logs = (await session.execute(select(BudgetResetLog))).scalars().all()
        assert [log.previous_spend for log in logs] == [D("1.25")]
        assert logs[0].reset_at == now
    finally:
        await db.aclose()


@pytest.mark.parametrize("alignment", ["calendar_day", "calendar_week", "calendar_month"])
async def test_calendar_reset(database_url: str, alignment: str) -> None:
    db = Database(database_url)
    due = datetime(2026, 1, 31, 0, 0, tzinfo=UTC)
    try:
        await _seed(db, max_budget="5", due=due)
        now = datetime(2026, 2, 10, 15, 0, tzinfo=UTC)
        assert await ledger.reset_user_if_due(db, "u1", now, _next(None, alignment, now))
        expected = {
            "calendar_day": datetime(2026, 2, 11, tzinfo=UTC),
            "calendar_week": datetime(2026, 2, 16, tzinfo=UTC),
            "calendar_month": datetime(2026, 3, 1, tzinfo=UTC),
        }[alignment]
        assert (await _user(db)).next_budget_reset_at == expected
    finally:
        await db.aclose()


def _user_record(max_budget: str) -> UserRecord:
    return UserRecord(
        user_id="u1",
        blocked=False,
        deleted=False,
        allowed_models=None,
        max_budget=D(max_budget),
        budget_duration_sec=None,
        reset_alignment=None,
        next_budget_reset_at=None,
    )


async def test_leases_take_one_round_trip_for_many_holds(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget="100")
        book = Ledger(db)
        holds = [await book.reserve(_user_record("100"), None, D(1)) for _ in range(LEASE_REQUESTS)]
        assert (await _user(db)).reserved == D(LEASE_REQUESTS)  # one lease, not 16 holds
        for hold in holds:
            book.settled(hold, D("0.5"))
        await book.return_leases(idle_only=False)
        # What stays reserved is exactly the cost the usage writer will move to spend.
        assert (await _user(db)).reserved == D("0.5") * LEASE_REQUESTS
    finally:
        await db.aclose()


async def test_leases_shrink_to_single_holds_near_the_end(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget="10")
        book = Ledger(db)
        for _ in range(10):
            await book.reserve(_user_record("10"), None, D(1))
        with pytest.raises(PermissionDenied, match="User 'u1' has exceeded budget limit"):
            await book.reserve(_user_record("10"), None, D(1))
        assert (await _user(db)).reserved == D(10)
    finally:
        await db.aclose()
