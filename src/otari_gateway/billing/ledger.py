"""Reserve, then settle: how a request's cost is held against budgets and then charged.

1. Admission estimates the most the request can cost (``cost.estimate_cost``) and holds it
   against every budget that applies — the user's (through its budget group) and the key's
   own. If any would be exceeded, nothing is held and the request is refused with 403.
2. Holds come out of this process's *lease* on each budget: headroom taken from the
   database in one atomic conditional UPDATE (``store/leases.py``: the sum of all leases
   never exceeds what is left), sized for twice the process's requests in flight (16 to
   256 holds) and shrinking to a single request's hold as the budget nears its end. So
   exactness costs a database round trip per lease, not per request.
3. When the request ends, its actual cost is charged in the usage writer's batch
   (``spend += cost``, and the cost leaves the lease) and the rest of its hold goes back to
   the lease at once. Upstream failures charge nothing; a client that disconnects is
   charged what was consumed as far as it is known (at least the input). Until the writer
   has committed the charge, the cost is still part of the lease's amount, so the lease
   stays open: closing it would give the cost back to the budget while it is in neither
   ``spend`` nor ``reserved``, and another request could take it a second time.
4. Each lease is a database row that reports its in-flight holds (what ``/v1/users`` shows
   as ``reserved``) a few times a second and is renewed every third of its TTL. A lease
   unused for ``LEASE_IDLE_SECONDS`` gives its headroom back and closes once the charge of
   its last request is written; all leases close on shutdown. A process that dies without
   shutting down stops renewing, and any live process closes its leases a TTL
   (``budget_lease_ttl_seconds``, 30 s by default) after their last renewal. A process uses
   a lease only for two thirds of the TTL after the database last confirmed it, so a
   stalled process never spends headroom that was already reaped.

The bound: spend ≤ max_budget + Σ over in-flight requests of (actual − held)⁺. A request
that sets max_tokens holds its true worst case for output, so only an input estimate below
the real count (chars/4 where no tokenizer is known) or a request without max_tokens (which
holds ``budget_estimate_default_output_tokens``) can exceed its hold. Free models and users
without a budget hold nothing.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import anyio
import structlog

from otari_gateway.billing.periods import advance
from otari_gateway.errors import PermissionDenied
from otari_gateway.store import leases as store_leases
from otari_gateway.store import ledger as store_ledger
from otari_gateway.store.access import KeyRecord, UserRecord
from otari_gateway.store.database import Database
from otari_gateway.store.leases import Kind, LeaseGone, LeaseRef
from otari_gateway.store.types import utcnow
from otari_gateway.store.usage_writer import UsageRecord

if TYPE_CHECKING:
    from otari_gateway.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

ZERO = Decimal(0)
LEASE_REQUESTS = 16
MAX_LEASE_REQUESTS = 256
LEASE_IDLE_SECONDS = 0.4
LEASE_TTL_SECONDS = 30.0
_TICK_SECONDS = 0.2

Scope = tuple[Kind, str]


@dataclass(eq=False)
class _Lease:
    ref: LeaseRef
    last_used: float
    confirmed: float
    available: Decimal = ZERO
    in_flight: Decimal = ZERO
    holds: int = 0
    # Costs of ended requests that the usage writer has not committed yet: still in the
    # lease's amount in the database, to be taken out of it by the writer's charge.
    uncharged: Decimal = ZERO
    # A request is adding headroom to the lease in the database right now.
    growing: bool = False
    reported: Decimal = ZERO
    lost: bool = False


@dataclass(frozen=True, slots=True)
class Hold:
    """What one request holds; settled or released exactly once."""

    user_id: str | None
    key_id: str | None
    user_amount: Decimal = ZERO
    key_amount: Decimal = ZERO
    user_lease: _Lease | None = field(default=None, compare=False)
    key_lease: _Lease | None = field(default=None, compare=False)

    @property
    def user_lease_id(self) -> str | None:
        return self.user_lease.ref.id if self.user_lease is not None else None

    @property
    def key_lease_id(self) -> str | None:
        return self.key_lease.ref.id if self.key_lease is not None else None


class Ledger:
    def __init__(
        self,
        db: Database,
        metrics: Metrics | None = None,
        *,
        lease_ttl_seconds: float = LEASE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._ttl = lease_ttl_seconds
        self._renew_after = lease_ttl_seconds / 3
        self._trust_for = lease_ttl_seconds * 2 / 3
        self._reap_every = min(5.0, lease_ttl_seconds / 6)
        self._holder = f"{socket.gethostname()[:80]}:{os.getpid()}"
        self._active: dict[Scope, _Lease] = {}
        # Leases no longer handed out: their headroom goes back, and they close once their
        # last in-flight request is charged.
        self._retired: list[_Lease] = []
        self._next_reap = 0.0
        self._growing: dict[Scope, anyio.Lock] = {}
        # Leases by id while they have uncharged costs, for the writer's confirmations.
        self._charging: dict[str, _Lease] = {}

    async def reset_due_periods(
        self, user: UserRecord, key: KeyRecord | None, now: datetime
    ) -> bool:
        """Start new budget periods that have ended; True if anything was reset."""
        reset = False
        if user.next_budget_reset_at is not None and user.next_budget_reset_at <= now:
            duration, alignment = user.budget_duration_sec, user.reset_alignment
            reset |= await store_ledger.reset_user_if_due(
                self._db,
                user.user_id,
                now,
                lambda due: advance(due, now, duration_sec=duration, alignment=alignment),
            )
        if (
            key is not None
            and key.budget_duration_sec
            and key.next_budget_reset_at is not None
            and key.next_budget_reset_at <= now
        ):
            duration_sec = key.budget_duration_sec
            reset |= await store_ledger.reset_key_if_due(
                self._db,
                key.id,
                now,
                lambda due: advance(due, now, duration_sec=duration_sec, alignment=None),
            )
        return reset

    async def reserve(self, user: UserRecord, key: KeyRecord | None, estimate: Decimal) -> Hold:
        key_id = key.id if key is not None else None
        user_amount = estimate if user.max_budget is not None else ZERO
        key_amount = estimate if key is not None and key.max_budget is not None else ZERO
        if user_amount == ZERO and key_amount == ZERO:
            return Hold(user.user_id, key_id)
        user_lease = key_lease = None
        refused: str | None = None
        if user_amount > ZERO:
            user_lease = await self._take(("user", user.user_id), user_amount)
            if user_lease is None:
                refused = "user"
        if refused is None and key_id is not None and key_amount > ZERO:
            try:
                key_lease = await self._take(("key", key_id), key_amount)
            finally:
                # Refused, or failed (the database): the user's hold goes back either way.
                if key_lease is None and user_lease is not None:
                    self._give(user_lease, user_amount, ZERO)
            if key_lease is None:
                refused = "key"
        if refused is not None and self._metrics is not None:
            self._metrics.budget_refused(refused)
        if refused == "user":
            raise PermissionDenied(
                f"User '{user.user_id}' has exceeded budget limit", code="budget_exceeded"
            )
        if refused == "key":
            raise PermissionDenied(
                f"API key '{key_id}' has exceeded budget limit", code="budget_exceeded"
            )
        return Hold(user.user_id, key_id, user_amount, key_amount, user_lease, key_lease)

    def settled(self, hold: Hold, cost: Decimal) -> None:
        """A request ended costing ``cost``: what it held beyond that returns to its leases
        (the cost itself leaves the lease with its usage row)."""
        if hold.user_lease is not None:
            self._give(hold.user_lease, hold.user_amount, cost)
        if hold.key_lease is not None:
            self._give(hold.key_lease, hold.key_amount, cost)

    def _give(self, lease: _Lease, held: Decimal, cost: Decimal) -> None:
        lease.in_flight -= held
        lease.holds -= 1
        if cost > ZERO:
            lease.uncharged += cost
            self._charging[lease.ref.id] = lease
        if self._active.get(_scope(lease)) is lease:
            lease.available += held - cost
        # A retired lease keeps the remainder until it closes and gives everything back.

    def charged(self, records: Sequence[UsageRecord]) -> None:
        """The usage writer is done with these records (their charges committed, or given
        up on): their costs no longer keep their leases open."""
        for record in records:
            for lease_id in (record.user_lease, record.key_lease):
                lease = self._charging.get(lease_id) if lease_id is not None else None
                if lease is None or record.cost <= ZERO:
                    continue
                lease.uncharged -= record.cost
                if lease.uncharged <= ZERO:
                    del self._charging[lease.ref.id]

    async def _take(self, scope: Scope, amount: Decimal) -> _Lease | None:
        now = self._clock()
        lease = self._active.get(scope)
        if lease is not None and now - lease.confirmed > self._trust_for:
            self._retire(lease)
            lease = None
        if lease is not None and lease.available >= amount:
            return self._carve(lease, amount, now)
        # One database round trip per scope at a time: requests arriving together wait for
        # it and carve their holds from the grown lease instead of each opening their own.
        lock = self._growing.setdefault(scope, anyio.Lock())
        try:
            async with lock:
                return await self._take_growing(scope, amount)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._growing.pop(scope, None)

    @staticmethod
    def _carve(lease: _Lease, amount: Decimal, now: float) -> _Lease:
        lease.available -= amount
        lease.in_flight += amount
        lease.holds += 1
        lease.last_used = now
        return lease

    async def _take_growing(self, scope: Scope, amount: Decimal) -> _Lease | None:
        now = self._clock()
        lease = self._active.get(scope)
        if lease is not None and lease.available >= amount:
            return self._carve(lease, amount, now)
        # Enough for this process's concurrency: twice the holds in flight, at least
        # LEASE_REQUESTS, at most MAX_LEASE_REQUESTS (what one idle worker can keep from
        # the others until it gives it back).
        requests = LEASE_REQUESTS if lease is None else max(LEASE_REQUESTS, 2 * lease.holds)
        for size in (amount * min(requests, MAX_LEASE_REQUESTS), amount):
            grown = await self._grow(scope, lease, size, now)
            if grown is not None:
                grown.available += size
                return self._carve(grown, amount, now)
        return None

    async def _grow(
        self, scope: Scope, lease: _Lease | None, size: Decimal, now: float
    ) -> _Lease | None:
        """Add ``size`` to the scope's lease (a new one if there is none); None if the
        budget has no room for it."""
        expires_at = utcnow() + timedelta(seconds=self._ttl)
        if lease is not None:
            lease.growing = True
            try:
                if not await store_leases.take(
                    self._db, lease.ref, size, expires_at=expires_at, new=False
                ):
                    return None
            except LeaseGone:
                lease.lost = True
                self._retire(lease)
            else:
                lease.confirmed = now
                return lease
            finally:
                lease.growing = False
        kind, owner = scope
        ref = LeaseRef(secrets.token_hex(16), kind, owner, self._holder)
        if not await store_leases.take(self._db, ref, size, expires_at=expires_at, new=True):
            return None
        fresh = _Lease(ref, last_used=now, confirmed=now)
        if scope in self._active:
            # Another request of this scope opened a lease meanwhile: keep that one, and
            # let this one close once the request holding from it ends.
            self._retired.append(fresh)
        else:
            self._active[scope] = fresh
        return fresh

    def _retire(self, lease: _Lease) -> None:
        scope = _scope(lease)
        if self._active.get(scope) is lease:
            del self._active[scope]
            self._retired.append(lease)

    def invalidate_leases(self) -> None:
        """A budget, user or key changed: take no more from the current leases (they are
        given back on the next tick), so the change applies from the next request."""
        for lease in list(self._active.values()):
            self._retire(lease)

    async def return_leases(self, *, idle_only: bool = True) -> None:
        """Retire idle leases (or all, at shutdown), give back their headroom, close the
        drained ones and report and renew the open ones."""
        now = self._clock()
        for lease in list(self._active.values()):
            if not idle_only or now - lease.last_used >= LEASE_IDLE_SECONDS:
                self._retire(lease)
        try:
            await self._settle_retired(closing=not idle_only)
            await self._report([*self._active.values(), *self._retired], now)
            if now >= self._next_reap:
                self._next_reap = now + self._reap_every
                reaped = await store_leases.reap_expired(self._db, utcnow())
                if reaped:
                    log.warning("lease.reaped", leases=reaped)
        except Exception as exc:  # noqa: BLE001 -- the database is down: retry next tick
            log.warning("lease.maintenance_failed", error=type(exc).__name__)

    async def _settle_retired(self, *, closing: bool) -> None:
        for lease in list(self._retired):
            if lease.growing:
                # Retired while a request was adding to it (it went idle, or was
                # invalidated): closing now would give back headroom that the request is
                # about to hold from it. It is settled on a later tick.
                continue
            if lease.lost:
                if lease.in_flight <= ZERO or closing:
                    self._retired.remove(lease)
                continue
            if lease.available > ZERO:
                if not await store_leases.give_back(self._db, lease.ref, lease.available):
                    lease.lost = True
                lease.available = ZERO
            if (lease.in_flight <= ZERO and lease.uncharged <= ZERO) or closing:
                await store_leases.close(self._db, lease.ref.id)
                self._retired.remove(lease)

    async def _report(self, leases: list[_Lease], now: float) -> None:
        """Write what each open lease holds in flight, all changes in one batch; renew
        (and so find out whether it still exists) each lease a third of its TTL after the
        database last confirmed it."""
        changed: dict[str, Decimal] = {}
        for lease in leases:
            if lease.lost:
                continue
            if now - lease.confirmed >= self._renew_after:
                expires_at = utcnow() + timedelta(seconds=self._ttl)
                held = max(lease.in_flight, ZERO)
                if await store_leases.renew(
                    self._db, lease.ref.id, held=held, expires_at=expires_at
                ):
                    lease.reported = lease.in_flight
                    lease.confirmed = now
                else:
                    lease.lost = True
                    self._retire(lease)
            elif lease.in_flight != lease.reported:
                changed[lease.ref.id] = max(lease.in_flight, ZERO)
                lease.reported = lease.in_flight
        if changed:
            await store_leases.report_held(self._db, changed)

    async def expire_leases(self) -> None:
        """Lease upkeep, forever (until cancelled at shutdown)."""
        while True:
            await anyio.sleep(_TICK_SECONDS)
            # Shielded: headroom taken out of the book must reach the database even when
            # shutdown cancels this loop mid-return.
            with anyio.CancelScope(shield=True):
                await self.return_leases()


def _scope(lease: _Lease) -> Scope:
    return lease.ref.kind, lease.ref.owner
