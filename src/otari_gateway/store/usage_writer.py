"""Usage rows and settlement, written off the hot path in batches.

Requests hand a finished ``UsageRecord`` to ``submit``; a background loop writes what has
gathered every ``flush_interval`` seconds (or sooner once ``batch_size`` rows wait), and
everything left on ``aclose`` (graceful shutdown). Each batch is ONE transaction that inserts
the usage rows and settles the ledger for them (``spend += cost`` per user and key, and the
cost leaves the budget lease it was held from), so recorded spend always equals the sum of
the usage rows. Once a batch is written (or given up on), ``on_written`` is told, so the
process's ledger keeps each lease open until the costs charged through it have left it. The
queue is bounded: when the database falls behind, ``submit`` waits instead of growing memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import anyio
import structlog
from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from otari_gateway.store.availability import DATABASE_ERRORS
from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, BudgetLease, UsageLog, User
from otari_gateway.usage import Usage

log = structlog.get_logger(__name__)

ZERO = Decimal(0)
_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
# PostgreSQL SQLSTATE classes of errors a row's own values cause (data exception, integrity
# constraint violation): retrying cannot help, and the rest of its batch must not pay for it.
_ROW_ERROR_CLASSES = ("22", "23")


@dataclass(frozen=True, slots=True)
class UsageRecord:
    id: str
    user_id: str | None
    api_key_id: str | None
    timestamp: datetime
    model: str
    provider: str | None
    endpoint: str
    usage: Usage
    cost: Decimal
    status: str
    status_code: int
    latency_ms: int
    error_message: str | None = None
    # The budget leases the request's holds came from (store/leases.py), if it held any.
    user_lease: str | None = None
    key_lease: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "api_key_id": self.api_key_id,
            "timestamp": self.timestamp,
            "model": _fit(self.model, _NAME_CHARS),
            "provider": None if self.provider is None else _fit(self.provider, _NAME_CHARS),
            "endpoint": _fit(self.endpoint, _ENDPOINT_CHARS),
            "prompt_tokens": _count(self.usage.prompt_tokens),
            "completion_tokens": _count(self.usage.completion_tokens),
            "total_tokens": _count(self.usage.total_tokens),
            "cache_read_tokens": _count(self.usage.cache_read_tokens),
            "cache_write_tokens": _count(self.usage.cache_write_tokens),
            "reasoning_tokens": _count(self.usage.reasoning_tokens),
            "cost": self.cost,
            "status": self.status,
            "error_message": None if self.error_message is None else _fit(self.error_message),
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
        }


# The column widths of usage_logs (models.py).
_NAME_CHARS = 255
_ENDPOINT_CHARS = 64


# The token columns are 32-bit integers: a count beyond is an upstream's bug (or malice),
# and a value the column refuses would cost the row and its charge (billed on the count).
_MAX_COUNT = 2**31 - 1


def _count(tokens: int) -> int:
    return min(max(tokens, 0), _MAX_COUNT)


def _fit(text: str, limit: int | None = None) -> str:
    """``text`` as a column can hold it: a client names the model, and PostgreSQL refuses a
    NUL character or a value longer than the column, which would fail the whole batch."""
    return text.replace("\x00", "\ufffd")[:limit]


def _row_error(exc: SQLAlchemyError) -> bool:
    """Whether the database refused the rows' values rather than failed (locked, down)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    state = getattr(exc.orig, "sqlstate", None) if isinstance(exc, DBAPIError) else None
    return isinstance(state, str) and state.startswith(_ROW_ERROR_CLASSES)


_users = cast(Table, User.__table__)
_keys = cast(Table, ApiKey.__table__)
_leases = cast(Table, BudgetLease.__table__)
# Core, not ORM, inserts: the ORM's per-row bookkeeping is pure cost for append-only rows.
_INSERT_ROWS = insert(cast(Table, UsageLog.__table__))


@dataclass(slots=True)
class _Charge:
    """What one batch charges one user or key through one lease (or without a lease)."""

    cost: Decimal = ZERO
    last_used: datetime | None = None
    # The part of ``cost`` that also leaves the owner's ``reserved`` (its lease was found).
    unreserved: Decimal = ZERO


def _charges(
    records: Sequence[UsageRecord],
) -> tuple[dict[tuple[str, str | None], _Charge], dict[tuple[str, str | None], _Charge]]:
    users: dict[tuple[str, str | None], _Charge] = defaultdict(_Charge)
    keys: dict[tuple[str, str | None], _Charge] = defaultdict(_Charge)
    for record in records:
        if record.user_id is not None:
            users[record.user_id, record.user_lease].cost += record.cost
        if record.api_key_id is not None:
            charge = keys[record.api_key_id, record.key_lease]
            charge.cost += record.cost
            charge.last_used = max(charge.last_used or record.timestamp, record.timestamp)
    return users, keys


class UsageWriter:
    def __init__(
        self,
        db: Database,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 1000,
        capacity: int = 20_000,
        on_written: Callable[[Sequence[UsageRecord]], None] | None = None,
        retry_delays: Sequence[float] = _RETRY_DELAYS,
    ) -> None:
        self._db = db
        self._on_written = on_written
        self._interval = flush_interval
        self._batch_size = batch_size
        self._retry_delays = tuple(retry_delays)
        self._send, self._receive = anyio.create_memory_object_stream[UsageRecord](capacity)
        self._done = anyio.Event()

    @property
    def pending(self) -> int:
        return self._send.statistics().current_buffer_used

    async def submit(self, record: UsageRecord) -> None:
        try:
            self._send.send_nowait(record)
        except anyio.WouldBlock:
            # The database is behind: wait for room rather than grow without bound.
            await self._send.send(record)

    async def run(self) -> None:
        """The writer loop; returns once ``aclose`` was called and everything is written."""
        try:
            async with self._receive:
                while await self._next_batch():
                    pass
        finally:
            self._done.set()

    async def _next_batch(self) -> bool:
        try:
            batch = [await self._receive.receive()]
        except anyio.EndOfStream:
            return False
        more = True
        with anyio.move_on_after(self._interval):
            while self._take_queued(batch):
                try:
                    batch.append(await self._receive.receive())
                except anyio.EndOfStream:
                    more = False
                    break
        await self._write_with_retries(batch)
        return more

    def _take_queued(self, batch: list[UsageRecord]) -> bool:
        """Move what is already queued into ``batch``; True while it has room for more.

        ``receive()`` yields to the event loop on every call, so taking one record per
        loop turn drained slower than 64 busy connections filled the queue: it sat at its
        capacity and rows were written seconds late.
        """
        while len(batch) < self._batch_size:
            try:
                batch.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                return True
        return False

    async def aclose(self) -> None:
        """Stop accepting records and wait until everything queued is written."""
        await self._send.aclose()
        await self._done.wait()

    async def _write_with_retries(self, batch: list[UsageRecord]) -> None:
        try:
            await self._persist(batch)
        finally:
            # Written or dropped, the batch no longer needs its leases: a dropped charge
            # never left them, and closing them gives its cost back, as it should.
            if self._on_written is not None:
                self._on_written(batch)

    async def _persist(self, batch: list[UsageRecord]) -> None:
        for delay in (*self._retry_delays, None):
            try:
                await write_batch(self._db, batch)
                return
            except DATABASE_ERRORS as exc:
                # A refused connection is a bare OSError (asyncpg connects outside
                # SQLAlchemy): retried like any outage, never let out to stop the writer.
                if isinstance(exc, SQLAlchemyError) and _row_error(exc):
                    await self._persist_apart(batch, exc)
                    return
                if delay is None:
                    log.error("usage.write_failed", rows=len(batch), error=type(exc).__name__)
                    return
                log.warning("usage.write_retry", rows=len(batch), error=type(exc).__name__)
                await anyio.sleep(delay)

    async def _persist_apart(self, batch: list[UsageRecord], exc: SQLAlchemyError) -> None:
        """One row the database refuses costs only that row: the rest are written one by one."""
        if len(batch) == 1:
            log.error("usage.row_refused", request_id=batch[0].id, error=type(exc).__name__)
            return
        log.warning("usage.batch_refused", rows=len(batch), error=type(exc).__name__)
        for record in batch:
            await self._persist([record])


async def write_batch(db: Database, batch: Sequence[UsageRecord]) -> None:
    """Insert the rows and settle the ledger for them, in one transaction."""
    rows = [record.row() for record in batch]
    try:
        await _write_rows(db, batch, rows)
    except IntegrityError:
        # A key deleted while its request was in flight: keep the row, without the key.
        live = await _existing_keys(db, {r["api_key_id"] for r in rows if r["api_key_id"]})
        for row in rows:
            if row["api_key_id"] not in live:
                row["api_key_id"] = None
        await _write_rows(db, batch, rows)


async def _write_rows(
    db: Database, batch: Sequence[UsageRecord], rows: list[dict[str, Any]]
) -> None:
    async with db.transaction() as connection:
        await insert_and_charge(connection, batch, rows)


async def insert_and_charge(
    connection: AsyncConnection, batch: Sequence[UsageRecord], rows: list[dict[str, Any]]
) -> None:
    """Insert ``rows`` (the records' rows) and charge the records' costs, inside the caller's
    transaction.

    Every lease row is updated before any owner's row, leases in id order and then users
    and keys each in id order: the lock order of every statement in ``store/leases.py``, so
    this batch and concurrent takes, give-backs and other workers' batches on PostgreSQL
    cannot wait on each other in a circle.
    """
    users, keys = _charges(batch)
    await connection.execute(_INSERT_ROWS, rows)
    # A lease is one owner's, so each lease id has one charge.
    costs = {
        lease_id: charge.cost
        for (_, lease_id), charge in (*users.items(), *keys.items())
        if lease_id is not None and charge.cost
    }
    found: set[str] = set()
    for lease_id in sorted(costs):
        moved = await connection.execute(
            update(_leases)
            .where(_leases.c.id == lease_id)
            .values(amount=_leases.c.amount - costs[lease_id])
        )
        if moved.rowcount == 1:
            found.add(lease_id)
    for table, ident, charges in ((_users, _users.c.user_id, users), (_keys, _keys.c.id, keys)):
        for owner, charge in sorted(_per_owner(charges, found).items()):
            values: dict[str, Any] = {"spend": table.c.spend + charge.cost}
            if charge.unreserved:
                values["reserved"] = table.c.reserved - charge.unreserved
            if charge.last_used is not None:
                values["last_used_at"] = charge.last_used
            await connection.execute(update(table).where(ident == owner).values(values))


def _per_owner(
    charges: Mapping[tuple[str, str | None], _Charge], found: set[str]
) -> dict[str, _Charge]:
    """Each owner's charges summed. A cost leaves ``reserved`` only if its lease was still
    there: a lease closed (or reaped) first already gave back all it had."""
    owners: dict[str, _Charge] = defaultdict(_Charge)
    for (owner, lease_id), charge in charges.items():
        total = owners[owner]
        total.cost += charge.cost
        if lease_id in found:
            total.unreserved += charge.cost
        if charge.last_used is not None:
            total.last_used = max(total.last_used or charge.last_used, charge.last_used)
    return owners


async def _existing_keys(db: Database, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    async with db.session() as session:
        found = await session.execute(select(ApiKey.id).where(ApiKey.id.in_(ids)))
        return set(found.scalars())
