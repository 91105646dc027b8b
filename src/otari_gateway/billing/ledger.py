"""Reserve, then settle: how a request's cost is held against budgets and then charged.

1. Admission estimates the most the request can cost (``cost.estimate_cost``) and holds it
   against every budget that applies — the user's (through its budget group) and the key's
   own — in one atomic step (``store.ledger.reserve``). If any would be exceeded, nothing is
   held and the request is refused with 403.
2. When the request ends, its actual cost is charged and its hold released, both in the
   usage writer's batch (``store.usage_writer``). Upstream failures charge nothing; a client
   that disconnects is charged what was consumed as far as it is known (at least the input).

The bound: spend ≤ max_budget + Σ over in-flight requests of (actual − held)⁺. A request
that sets max_tokens holds its true worst case for output, so only an input estimate below
the real count (chars/4 where no tokenizer is known) or a request without max_tokens (which
holds ``budget_estimate_default_output_tokens``) can exceed its hold. Free models and users
without a budget hold nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from otari_gateway.billing.periods import advance
from otari_gateway.errors import PermissionDenied
from otari_gateway.store import ledger as store_ledger
from otari_gateway.store.access import KeyRecord, UserRecord
from otari_gateway.store.database import Database
from otari_gateway.telemetry.metrics import Metrics

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Hold:
    """What one request holds; settled or released exactly once through the usage writer."""

    user_id: str | None
    key_id: str | None
    user_amount: Decimal = ZERO
    key_amount: Decimal = ZERO


class Ledger:
    def __init__(self, db: Database, metrics: Metrics | None = None) -> None:
        self._db = db
        self._metrics = metrics

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
        refused = await store_ledger.reserve(
            self._db,
            user_id=user.user_id,
            user_hold=user_amount,
            key_id=key_id,
            key_hold=key_amount,
        )
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
