"""Settlement: what happens once a request's outcome is known.

Every admitted request ends in exactly one ``settle`` call — success, upstream error, client
disconnect — and streams settle *before* their terminal event is sent, because clients hang
up as soon as they read it. Settling prices the usage and hands one usage record (with the
request's hold, to release) to the batched usage writer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from otari_gateway.billing.cost import cost_of
from otari_gateway.pipeline.admission import Admission, Admitted
from otari_gateway.pipeline.request import GatewayRequest, Surface
from otari_gateway.pipeline.routing import Target
from otari_gateway.store.types import utcnow
from otari_gateway.store.usage_writer import UsageRecord, UsageWriter
from otari_gateway.usage import Usage

if TYPE_CHECKING:
    from otari_gateway.telemetry.metrics import Metrics

ZERO = Decimal(0)
CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class Outcome:
    request: GatewayRequest
    target: Target | None
    admitted: Admitted | None
    usage: Usage | None
    status: int
    error: str | None = None
    # Known even when admission refused the request (it is the first thing settled).
    user_id: str | None = None
    # Upstream stream events that reached the client before a stream was cut short.
    delivered_events: int = 0
    # The stream's usage was the provider's count so far, not a placeholder (exchange.py).
    usage_final: bool = False

    @property
    def latency_ms(self) -> int:
        return int((time.monotonic() - self.request.received_at) * 1000)


def charged_usage(outcome: Outcome) -> Usage | None:
    """What to bill: the reported usage; where the upstream did the work but no usage
    arrived (a provider that reports none, such as Liner, or a client that left first), at
    least the input counted at admission, so such requests still draw on their budgets and
    pay any per-request price; nothing for an upstream failure that delivered nothing."""
    usage = outcome.usage
    reported = usage is not None and not (
        usage == _NOTHING and outcome.request.surface in _TOKEN_SURFACES
    )
    if outcome.delivered_events:
        return _cut_short(outcome, usage if reported else None)
    if reported:
        return usage
    worked = outcome.status < 400 or outcome.status == CLIENT_CLOSED
    if worked and outcome.admitted is not None:
        return Usage(prompt_tokens=outcome.admitted.input_tokens)
    return None


def _cut_short(outcome: Outcome, usage: Usage | None) -> Usage:
    """A stream that ended early (the upstream died, or the client left) after output reached
    the client: the provider bills the input and what it generated, but reports usage only
    at the end (OpenAI) or only partly (Anthropic's running ``output_tokens``). Each relayed
    event carries about one generated token, so their count stands in for what is missing."""
    admitted = outcome.admitted
    base = usage or Usage()
    estimate = outcome.delivered_events
    counted = 0 if admitted is None else admitted.input_tokens
    if usage is not None and outcome.usage_final:
        # The provider counted everything it generated: nothing to estimate.
        return replace(usage, prompt_tokens=usage.prompt_tokens or counted)
    if admitted is not None:
        # Never past the output the request allowed (what its hold was sized for): a few of
        # the events are structure (role, stop), not tokens.
        estimate = min(estimate, admitted.reserved_tokens - admitted.input_tokens)
    return replace(
        base,
        prompt_tokens=base.prompt_tokens or counted,
        completion_tokens=max(base.completion_tokens, estimate),
    )


_NOTHING = Usage()
# Surfaces where every call consumes input tokens: all-zero usage there means the provider
# reported none (any-llm fills zeros for such providers), not that the call was free.
_TOKEN_SURFACES = frozenset({Surface.CHAT, Surface.MESSAGES, Surface.RESPONSES})


class Settler:
    def __init__(
        self, writer: UsageWriter, admission: Admission, metrics: Metrics | None = None
    ) -> None:
        self._writer = writer
        self._admission = admission
        self._metrics = metrics

    def _observe(self, outcome: Outcome, usage: Usage | None, cost: Decimal) -> None:
        if self._metrics is None:
            return
        target = outcome.target
        self._metrics.observe_request(
            surface=outcome.request.surface.value,
            provider=target.instance if target else None,
            model=target.model if target else None,
            status=outcome.status,
            seconds=time.monotonic() - outcome.request.received_at,
            usage=usage,
            cost=cost,
        )

    async def settle(self, outcome: Outcome) -> None:
        admitted = outcome.admitted
        if admitted is None:
            # Refused before anything was held (unknown model, no price, budget, rate
            # limit): nothing to charge, but the refusal is recorded against its user.
            self._observe(outcome, None, ZERO)
            if outcome.user_id is not None:
                await self._writer.submit(self._record(outcome, outcome.user_id, None, ZERO))
            return
        usage = charged_usage(outcome)
        await self._admission.settle_tokens(admitted, usage.total_tokens if usage else 0)
        price = admitted.price
        cost = cost_of(usage, price) if usage is not None and price is not None else ZERO
        self._admission.settled(admitted.hold, cost)
        await self._writer.submit(self._record(outcome, admitted.user_id, usage, cost, admitted))
        self._observe(outcome, usage, cost)

    @staticmethod
    def _record(
        outcome: Outcome,
        user_id: str,
        usage: Usage | None,
        cost: Decimal,
        admitted: Admitted | None = None,
    ) -> UsageRecord:
        target, request = outcome.target, outcome.request
        key = request.caller.key
        return UsageRecord(
            id=request.request_id,
            user_id=user_id,
            api_key_id=key.id if key is not None else None,
            timestamp=utcnow(),
            model=target.model if target else request.model,
            provider=target.instance if target else None,
            endpoint=request.surface.value,
            usage=usage or Usage(),
            cost=cost,
            status="success" if outcome.status < 400 else "error",
            status_code=outcome.status,
            latency_ms=outcome.latency_ms,
            error_message=outcome.error,
            # The cost is charged from the leases the hold came from; the rest of the hold
            # went back to them already.
            user_lease=admitted.hold.user_lease_id if admitted else None,
            key_lease=admitted.hold.key_lease_id if admitted else None,
        )
