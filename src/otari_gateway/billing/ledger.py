"""Reserve, then settle: how a request's cost is held against budgets and then charged.

1. Admission estimates the most the request can cost (``cost.estimate_cost``) and holds it
   against every budget that applies — the user's (through its budget group) and the key's
   own. If any would be exceeded, nothing is held and the request is refused with 403.
2. Holds come out of this process's *lease* on each budget: headroom taken from the
   database in one atomic conditional UPDATE (``store.ledger.reserve``: the sum of all
   leases never exceeds what is left), sized for ``LEASE_REQUESTS`` requests and shrinking
   to a single request's hold as the budget nears its end. So exactness costs a database
   round trip per lease, not per request.
3. When the request ends, its actual cost is charged in the usage writer's batch
   (``spend += cost``, ``reserved -= cost``, with the usage row) and the rest of its hold
   goes back to the lease at once. Upstream failures charge nothing; a client that
   disconnects is charged what was consumed as far as it is known (at least the input).
4. A lease unused for ``LEASE_IDLE_SECONDS`` returns its headroom to the database, and all
   leases return on shutdown, so ``reserved`` drains to 0 soon after traffic stops. (A
   process killed without shutdown leaves its leases reserved.)

The bound: spend ≤ max_budget + Σ over in-flight requests of (actual − held)⁺. A request
that sets max_tokens holds its true worst case for output, so only an input estimate below
the real count (chars/4 where no tokenizer is known) or a request without max_tokens (which
holds ``budget_estimate_default_output_tokens``) can exceed its hold. Free models and users
without a budget hold nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import anyio
import structlog

from otari_gateway.billing.periods import advance
from otari_gateway.errors import PermissionDenied
from otari_gateway.store import ledger as store_ledger
from otari_gateway.store.access import KeyRecord, UserRecord
from otari_gateway.store.database import Database
from otari_gateway.telemetry.metrics import Metrics

log = structlog.get_logger(__name__)

ZERO = Decimal(0)
LEASE_REQUESTS = 16
LEASE_IDLE_SECONDS = 0.4
_EXPIRY_TICK_SECONDS = 0.2

Scope = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Hold:
    """What one request holds; settled or released exactly once through the usage writer."""

    user_id: str | None
    key_id: str | None
    user_amount: Decimal = ZERO
    key_amount: Decimal = ZERO


@dataclass
class _Lease:
    available: Decimal
    last_used: float


class Ledger:
    def __init__(self, db: Database, metrics: Metrics | None = None) -> None:
        self._db = db
        self._metrics = metrics
        self._leases: dict[Scope, _Lease] = {}
        self._stale: list[tuple[Scope, _Lease]] = []

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
        refused: str | None = None
        if user_amount > ZERO and not await self._take(("user", user.user_id), user_amount):
            refused = "user"
        elif (
            key_id is not None
            and key_amount > ZERO
            and not await self._take(("key", key_id), key_amount)
        ):
            refused = "key"
            self._give(("user", user.user_id), user_amount)
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
        return Hold(user.user_id, key_id, user_amount, key_amount)

    def settled(self, hold: Hold, cost: Decimal) -> None:
        """A request ended costing ``cost``: what it held beyond that returns to the leases
        (the cost itself leaves ``reserved`` with its usage row)."""
        if hold.user_amount > ZERO and hold.user_id is not None:
            self._give(("user", hold.user_id), hold.user_amount - cost)
        if hold.key_amount > ZERO and hold.key_id is not None:
            self._give(("key", hold.key_id), hold.key_amount - cost)

    async def _take(self, scope: Scope, amount: Decimal) -> bool:
        now = time.monotonic()
        lease = self._leases.get(scope)
        if lease is not None and lease.available >= amount:
            lease.available -= amount
            lease.last_used = now
            return True
        for size in (amount * LEASE_REQUESTS, amount):
            if await self._extend(scope, size):
                lease = self._leases.setdefault(scope, _Lease(ZERO, now))
                lease.available += size - amount
                lease.last_used = now
                return True
        return False

    async def _extend(self, scope: Scope, size: Decimal) -> bool:
        kind, ident = scope
        if kind == "user":
            refused = await store_ledger.reserve(
                self._db, user_id=ident, user_hold=size, key_id=None, key_hold=ZERO
            )
        else:
            refused = await store_ledger.reserve(
                self._db, user_id="", user_hold=ZERO, key_id=ident, key_hold=size
            )
        return refused is None

    def _give(self, scope: Scope, amount: Decimal) -> None:
        if amount == ZERO:
            return
        lease = self._leases.setdefault(scope, _Lease(ZERO, time.monotonic()))
        lease.available += amount

    def invalidate_leases(self) -> None:
        """A budget, user or key changed: take no more from the current leases (they are
        returned on the next tick), so the change applies from the next request."""
        self._stale.extend(self._leases.items())
        self._leases.clear()

    async def return_leases(self, *, idle_only: bool = True) -> None:
        """Give unused headroom back to the database (idle leases, or all at shutdown)."""
        now = time.monotonic()
        returning, self._stale = self._stale, []
        for scope, lease in list(self._leases.items()):
            if not idle_only or now - lease.last_used >= LEASE_IDLE_SECONDS:
                del self._leases[scope]
                returning.append((scope, lease))
        for scope, lease in returning:
            if lease.available == ZERO:
                continue
            kind, ident = scope
            try:
                await store_ledger.release(
                    self._db,
                    user_id=ident if kind == "user" else "",
                    user_hold=lease.available if kind == "user" else ZERO,
                    key_id=ident if kind == "key" else None,
                    key_hold=lease.available if kind == "key" else ZERO,
                )
            except Exception:  # noqa: BLE001 -- the database is down: keep it, retry next tick
                log.warning("lease.return_failed", scope=kind)
                self._stale.append((scope, lease))

    async def expire_leases(self) -> None:
        """Return idle leases, forever (until cancelled at shutdown)."""
        while True:
            await anyio.sleep(_EXPIRY_TICK_SECONDS)
            # Shielded: leases taken out of the book must reach the database even when
            # shutdown cancels this loop mid-return.
            with anyio.CancelScope(shield=True):
                await self.return_leases()
