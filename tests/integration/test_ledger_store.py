"""The ledger on real SQLite and PostgreSQL: holds, settlement batches, period resets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from sqlalchemy import func, select, update
from structlog.testing import capture_logs

from otari_gateway.billing.ledger import LEASE_REQUESTS, Hold, Ledger
from otari_gateway.billing.periods import advance
from otari_gateway.errors import PermissionDenied
from otari_gateway.store import keys_repo, leases, ledger
from otari_gateway.store.access import KeyRecord, UserRecord
from otari_gateway.store.database import Database
from otari_gateway.store.models import (
    ApiKey,
    Budget,
    BudgetLease,
    BudgetResetLog,
    UsageLog,
    User,
)
from otari_gateway.store.usage_writer import UsageRecord, UsageWriter, write_batch
from otari_gateway.usage import Usage
from tests.databases import fresh_database
from tests.integration.gateway_process import free_port

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


def _record(index: int, cost: str, lease: str | None = None) -> UsageRecord:
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
        user_lease=lease,
    )


def _ref(kind: leases.Kind, owner: str, lease_id: str = "L1") -> leases.LeaseRef:
    return leases.LeaseRef(lease_id, kind, owner, "test-holder")


LATER = datetime.now(UTC) + timedelta(hours=1)


async def _lease_rows(db: Database) -> list[BudgetLease]:
    async with db.session() as session:
        return list((await session.execute(select(BudgetLease))).scalars())


async def test_lease_takes_are_conditional(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget="1.00", key_budget="0.50")
        user_lease, key_lease = _ref("user", "u1", "LU"), _ref("key", "k1", "LK")
        assert await leases.take(db, user_lease, D("0.40"), expires_at=LATER, new=True)
        assert await leases.take(db, key_lease, D("0.40"), expires_at=LATER, new=True)
        assert not await leases.take(db, key_lease, D("0.20"), expires_at=LATER, new=False)
        assert (await _user(db)).reserved == D("0.400000")
        assert (await _key(db)).reserved == D("0.40")
        assert not await leases.take(db, user_lease, D("0.61"), expires_at=LATER, new=False)
        assert await leases.take(db, user_lease, D("0.60"), expires_at=LATER, new=False)
        amounts = {row.id: row.amount for row in await _lease_rows(db)}
        assert amounts == {"LU": D("1.00"), "LK": D("0.40")}
        # A refused new lease leaves no row behind.
        assert not await leases.take(db, _ref("user", "u1", "L2"), D(1), expires_at=LATER, new=True)
        assert len(await _lease_rows(db)) == 2
        with pytest.raises(leases.LeaseGone):
            await leases.take(db, _ref("user", "u1", "nope"), D(0), expires_at=LATER, new=False)
    finally:
        await db.aclose()


async def test_concurrent_leases_never_exceed_budget(database_url: str) -> None:
    db = Database(database_url)
    granted = 0
    try:
        await _seed(db, max_budget="0.000010")

        async def one(index: int) -> None:
            nonlocal granted
            ref = _ref("user", "u1", f"L{index}")
            if await leases.take(db, ref, D("0.000001"), expires_at=LATER, new=True):
                granted += 1

        async with anyio.create_task_group() as group:
            for index in range(40):
                group.start_soon(one, index)
        assert granted == 10
        assert (await _user(db)).reserved == D("0.000010")
        assert sum(row.amount for row in await _lease_rows(db)) == D("0.000010")
    finally:
        await db.aclose()


async def test_writer_charges_exactly_in_batches(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget="1")
        assert await leases.take(db, _ref("user", "u1"), D("0.5"), expires_at=LATER, new=True)
        writer = UsageWriter(db, flush_interval=0.05, batch_size=7)
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            for index in range(30):
                await writer.submit(_record(index, "0.000001", "L1" if index % 2 else None))
            await writer.aclose()
        user, key = await _user(db), await _key(db)
        assert user.spend == D("0.000030")
        assert key.spend == D("0.000030")
        # Only the 15 charges held from the lease leave it (and ``reserved``).
        assert user.reserved == D("0.5") - D("0.000015")
        assert [row.amount for row in await _lease_rows(db)] == [D("0.5") - D("0.000015")]
        assert key.last_used_at is not None and key.last_used_at.tzinfo is not None
        async with db.session() as session:
            total = (await session.execute(select(func.count()).select_from(UsageLog))).scalar_one()
        assert total == 30
    finally:
        await db.aclose()


async def test_writer_takes_what_is_queued_in_one_step(database_url: str) -> None:
    # Under load the queue fills between two turns of the writer; taking one record per
    # event-loop turn let it fall behind, so it must take everything queued at once.
    db = Database(database_url)
    try:
        await _seed(db, max_budget=None)
        writer = UsageWriter(db, flush_interval=5, batch_size=50, capacity=200)
        for index in range(120):
            await writer.submit(_record(index, "0.000001"))
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            for _ in range(1_000):
                if writer.pending != 120:
                    break
                await anyio.lowlevel.checkpoint()
            assert writer.pending == 70
            await writer.aclose()
        assert (await _user(db)).spend == D("0.000120")
    finally:
        await db.aclose()


async def test_a_row_the_database_refuses_costs_only_that_row(database_url: str) -> None:
    # A client-chosen model name longer than the column, or holding NUL, used to fail the
    # whole batch on PostgreSQL: every other user's rows and spend in it were lost.
    db = Database(database_url)
    try:
        await _seed(db, max_budget=None)
        await write_batch(db, [_record(0, "0.000001")])
        odd = replace(
            _record(1, "0.000001"),
            model="m\x00" + "x" * 300,
            endpoint="e" * 80,
            usage=Usage(prompt_tokens=3, completion_tokens=3_000_000_000),
        )
        # r0 again: a duplicate id, which no database takes.
        batch = [_record(2, "0.000001"), odd, _record(0, "0.5"), _record(3, "0.000001")]
        writer = UsageWriter(db, flush_interval=0.01)
        for record in batch:
            await writer.submit(record)
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            await writer.aclose()
        async with db.session() as session:
            rows = {row.id: row for row in (await session.execute(select(UsageLog))).scalars()}
        assert sorted(rows) == ["r0", "r1", "r2", "r3"]
        assert rows["r1"].model == "m\ufffd" + "x" * 253
        assert rows["r1"].endpoint == "e" * 64
        assert rows["r1"].completion_tokens == 2**31 - 1
        assert (await _user(db)).spend == D("0.000004")
    finally:
        await db.aclose()


async def test_the_writer_outlives_a_database_it_cannot_reach() -> None:
    # asyncpg's refused connection is a bare OSError, which used to end the writer's task
    # and with it the worker's task group.
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/otari")
    written: list[int] = []
    writer = UsageWriter(
        db, flush_interval=0.01, retry_delays=(0.01,), on_written=lambda b: written.append(len(b))
    )
    try:
        await writer.submit(_record(0, "0.01"))
        with capture_logs() as logs:
            async with anyio.create_task_group() as group:
                group.start_soon(writer.run)
                await writer.aclose()
        assert written == [1]
        assert [entry["event"] for entry in logs] == ["usage.write_retry", "usage.write_failed"]
    finally:
        await db.aclose()


async def test_a_charge_after_the_lease_closed_is_not_given_back_twice(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget="1")
        assert await leases.take(db, _ref("user", "u1"), D("0.5"), expires_at=LATER, new=True)
        await leases.close(db, "L1")
        assert (await _user(db)).reserved == 0
        await write_batch(db, [_record(1, "0.25", "L1")])
        user = await _user(db)
        assert (user.spend, user.reserved) == (D("0.25"), 0)
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


def _key_record(key_id: str) -> KeyRecord:
    """User u1's key with a budget of 100."""
    return KeyRecord(
        id=key_id,
        user_id="u1",
        is_active=True,
        expires_at=None,
        allowed_models=None,
        max_budget=D(100),
        budget_duration_sec=None,
        next_budget_reset_at=None,
        rpm_limit=None,
        tpm_limit=None,
    )


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
        assert len({hold.user_lease_id for hold in holds}) == 1
        (row,) = await _lease_rows(db)
        assert row.amount == D(LEASE_REQUESTS)
        await book.return_leases()  # not idle yet: reports what is held in flight
        assert (await _lease_rows(db))[0].held == D(LEASE_REQUESTS)
        for hold in holds:
            book.settled(hold, D("0.5"))
        await write_batch(
            db, [_record(i, "0.5", hold.user_lease_id) for i, hold in enumerate(holds)]
        )
        await book.return_leases(idle_only=False)
        user = await _user(db)
        assert (user.spend, user.reserved) == (D("0.5") * LEASE_REQUESTS, 0)
        assert await _lease_rows(db) == []
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


async def _expire_all(db: Database) -> None:
    """Time passing for the leases, injected: every lease's renewal is long overdue."""
    async with db.session() as session:
        await session.execute(
            update(BudgetLease).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def test_a_dead_process_leases_are_reaped(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget="100", key_budget="100")
        dead = Ledger(db)
        key = _key_record("k1")
        held = await dead.reserve(_user_record("100"), key, D(1))
        assert (await _user(db)).reserved == D(LEASE_REQUESTS)
        assert (await _key(db)).reserved == D(LEASE_REQUESTS)
        # The process dies here: no settlement, no return. Another process reaps.
        await _expire_all(db)
        survivor = Ledger(db)
        await survivor.return_leases()
        assert ((await _user(db)).reserved, (await _key(db)).reserved) == (0, 0)
        assert await _lease_rows(db) == []
        # The budget is whole again: the survivor can hold all of it.
        await survivor.reserve(_user_record("100"), None, D(100))
        # A row the dead process had queued is charged once, never given back twice.
        await write_batch(db, [_record(1, "0.5", held.user_lease_id)])
        user = await _user(db)
        assert (user.spend, user.reserved) == (D("0.5"), D(100))
    finally:
        await db.aclose()


async def test_a_process_whose_lease_was_reaped_opens_a_new_one(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _seed(db, max_budget="100")
        clock = [1000.0]
        stalled = Ledger(db, lease_ttl_seconds=30, clock=lambda: clock[0])
        first = await stalled.reserve(_user_record("100"), None, D(1))
        stalled.settled(first, D(0))
        # The process stalls past its lease's TTL; another process reaps the lease.
        clock[0] += 31
        await _expire_all(db)
        await Ledger(db).return_leases()
        # Back, it does not trust the lease any more, and opens a new one.
        second = await stalled.reserve(_user_record("100"), None, D(1))
        assert second.user_lease_id != first.user_lease_id
        assert (await _user(db)).reserved == D(LEASE_REQUESTS)
        assert [row.id for row in await _lease_rows(db)] == [second.user_lease_id]
    finally:
        await db.aclose()


async def test_a_lease_stays_open_until_its_charges_are_written(database_url: str) -> None:
    """An idle lease whose last request has ended closes only once the usage writer has
    charged that request: closed before, it would give the cost back to the budget while
    the cost is in neither ``spend`` nor ``reserved``, for another request to take again."""
    db = Database(database_url)
    try:
        await _seed(db, max_budget="10")
        clock = [1000.0]
        book = Ledger(db, clock=lambda: clock[0])
        hold = await book.reserve(_user_record("10"), None, D(10))
        book.settled(hold, D(10))
        clock[0] += 1  # idle: the lease is retired and would close
        await book.return_leases()
        assert len(await _lease_rows(db)) == 1
        user = await _user(db)
        assert user.spend + user.reserved == D(10)
        with pytest.raises(PermissionDenied):
            await book.reserve(_user_record("10"), None, D(1))
        writer = UsageWriter(db, flush_interval=0.01, on_written=book.charged)
        async with anyio.create_task_group() as group:
            group.start_soon(writer.run)
            await writer.submit(_record(1, "10", hold.user_lease_id))
            await writer.aclose()
        await book.return_leases()
        assert await _lease_rows(db) == []
        user = await _user(db)
        assert (user.spend, user.reserved) == (D(10), 0)
    finally:
        await db.aclose()


async def test_a_lease_retired_while_it_grows_is_not_closed_under_the_hold(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request grows the scope's idle lease while the upkeep tick retires it: the tick
    must not close the lease (giving back what the request is about to hold from it)."""
    db = Database(database_url)
    try:
        await _seed(db, max_budget="10")
        clock = [1000.0]
        book = Ledger(db, clock=lambda: clock[0])
        first = await book.reserve(_user_record("10"), None, D(2))
        book.settled(first, D(0))  # the lease keeps 2 available
        clock[0] += 1  # idle
        take = leases.take
        grown, resume = anyio.Event(), anyio.Event()

        async def take_then_wait(*args: Any, **kwargs: Any) -> bool:
            took = await take(*args, **kwargs)
            if took and not kwargs["new"]:
                grown.set()
                await resume.wait()
            return took

        monkeypatch.setattr(leases, "take", take_then_wait)
        holds: list[Hold] = []
        async with anyio.create_task_group() as group:

            async def reserve() -> None:
                holds.append(await book.reserve(_user_record("10"), None, D(3)))

            group.start_soon(reserve)
            await grown.wait()  # the lease now has 2 + 3 in the database
            await book.return_leases()  # the tick: the lease is idle and retired
            resume.set()
        (hold,) = holds
        assert hold.user_lease_id == first.user_lease_id
        user = await _user(db)
        assert user.reserved >= D(3), "the hold in flight is backed by the lease"
        book.settled(hold, D(0))
        await book.return_leases()
        assert ((await _user(db)).reserved, await _lease_rows(db)) == (0, [])
    finally:
        await db.aclose()


async def test_a_failed_key_hold_gives_the_user_hold_back(database_url: str) -> None:
    # The key's lease could not be written (here: the key row is gone, a foreign-key
    # error; in the audit, a deadlock): the user's hold, taken first, used to stay held.
    db = Database(database_url)
    try:
        await _seed(db, max_budget="100")
        book = Ledger(db)
        missing = _key_record("k-gone")
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            await book.reserve(_user_record("100"), missing, D(1))
        await book.return_leases()  # reports what the open lease holds in flight
        assert [row.held for row in await _lease_rows(db)] == [0]
    finally:
        await db.aclose()


def test_charges_and_lease_moves_keep_one_lock_order(tmp_path: Path) -> None:
    """Writer batches charging two leases of one user, against takes and give-backs on
    those leases and lease reports, all at once on PostgreSQL: none may deadlock (each call
    here has no retry of its own, so a deadlock fails the test)."""
    with fresh_database("postgresql", tmp_path) as url:
        anyio.run(_one_lock_order, url)


async def _one_lock_order(url: str) -> None:
    db = Database(url)
    try:
        await _seed(db, max_budget="1000000", key_budget="1000000")
        refs = [_ref("user", "u1", "L1"), _ref("user", "u1", "L2"), _ref("key", "k1", "L3")]
        for ref in refs:
            assert await leases.take(db, ref, D(100), expires_at=LATER, new=True)
        counter = iter(range(1_000_000))

        def batch() -> list[UsageRecord]:
            records = [_record(next(counter), "0.01", lease) for lease in ("L2", "L1")]
            return [replace(records[0], key_lease="L3"), records[1]]

        async def writes() -> None:
            for _ in range(60):
                await write_batch(db, batch())

        async def moves(ref: leases.LeaseRef) -> None:
            for _ in range(60):
                await leases.take(db, ref, D(1), expires_at=LATER, new=False)
                await leases.give_back(db, ref, D(1))

        async def reports() -> None:
            for _ in range(60):
                await leases.report_held(db, {"L3": D(1), "L2": D(1), "L1": D(1)})

        async with anyio.create_task_group() as group:
            group.start_soon(writes)
            group.start_soon(writes)
            group.start_soon(reports)
            for ref in refs:
                group.start_soon(moves, ref)
        user, key = await _user(db), await _key(db)
        assert user.spend == D("0.01") * 240
        assert user.reserved == D(200) - D("0.01") * 240
        assert key.reserved == D(100) - D("0.01") * 120
    finally:
        await db.aclose()


def test_deleting_keys_in_use_keeps_the_lock_order(tmp_path: Path) -> None:
    """A key deleted while its lease is being taken from and given back to, on PostgreSQL:
    the delete's cascade to the lease must not lock in the opposite order."""
    with fresh_database("postgresql", tmp_path) as url:
        anyio.run(_delete_keys_in_use, url)


async def _delete_keys_in_use(url: str) -> None:
    db = Database(url)
    try:
        await _seed(db, max_budget=None)
        ids = [f"k{number}" for number in range(2, 10)]
        async with db.session() as session:
            for key_id in ids:
                session.add(
                    ApiKey(
                        id=key_id,
                        key_hash=key_id * 32,
                        key_prefix="sk-otari-xx",
                        user_id="u1",
                        max_budget=D(1000),
                        metadata_={},
                        spend=D(0),
                        reserved=D(0),
                    )
                )
        refs = [_ref("key", key_id, f"L{key_id}") for key_id in ids]
        for ref in refs:
            assert await leases.take(db, ref, D(100), expires_at=LATER, new=True)

        async def use(ref: leases.LeaseRef) -> None:
            while await leases.give_back(db, ref, D(1)):
                try:
                    await leases.take(db, ref, D(1), expires_at=LATER, new=False)
                except leases.LeaseGone:
                    return

        async def delete_all() -> None:
            for key_id in ids:
                await anyio.sleep(0.02)
                async with db.session() as session:
                    await keys_repo.delete_key(session, key_id)

        async with anyio.create_task_group() as group:
            for ref in refs:
                group.start_soon(use, ref)
            group.start_soon(delete_all)
        assert await _lease_rows(db) == []
    finally:
        await db.aclose()
