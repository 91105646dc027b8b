"""Rate limiting: reserve, then settle — the ``Limiter`` protocol and its decision type.

Reserve then settle (STYLE.md practice 9):

1. **Reserve.** Before the upstream call the pipeline calls
   ``acquire(scope, rpm=..., tpm=..., tokens=estimate)``. In one atomic step the limiter checks
   the scope's request and token windows and, only if *both* have room, counts one request and
   reserves ``estimate`` tokens. A refused request consumes nothing, so a client hammering a
   closed window does not push its own reopening further away.
2. **Settle.** When the response is done (or failed, or the client left) the pipeline calls
   ``adjust_tokens(scope, actual - estimate)`` exactly once. The delta may be negative (the
   estimate was high, or the call failed and ``actual`` is 0: a full refund); the token count
   never goes below 0. The correction lands in the scope's *current* window, which is where
   a late correction matters for the next admission decision.

A scope is whatever the caller wants limited together (``key:<id>``, ``global``); the
deployment-wide and per-key limits are two ``acquire`` calls on two scopes. ``rpm``/``tpm``
``None`` means no limit; ``0`` refuses everything (a frozen scope). With both ``None`` the
decision is ``UNLIMITED`` and carries no headers.

The reported decision is the tighter of the RPM and TPM decisions: a refusal wins (the one
with the longer wait if both refuse), otherwise the one with the smaller remaining fraction.
Window semantics and the burst bound are documented in ``limits/window.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The outcome of one ``acquire`` against one limit (or the tighter of two).

    ``reset_seconds`` is the time until the whole quota is back; ``retry_after`` is the
    time until this same request would fit (0 when allowed). ``limit == 0`` with ``allowed``
    means "no limit configured": no headers.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` for every limited answer, plus ``Retry-After`` on a refusal."""
        if self.allowed and self.limit == 0:
            return {}
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


UNLIMITED = LimitDecision(allowed=True, limit=0, remaining=0, reset_seconds=0, retry_after=0)


def tighter(first: LimitDecision, second: LimitDecision) -> LimitDecision:
    """The decision a client should see: a refusal first, then the least headroom."""
    if first.allowed != second.allowed:
        return second if first.allowed else first
    if not first.allowed:
        return first if first.retry_after >= second.retry_after else second
    if first.limit == 0:
        return second
    if second.limit == 0:
        return first
    # Compare remaining/limit without floats.
    return first if first.remaining * second.limit <= second.remaining * first.limit else second


class Limiter(Protocol):
    """Request and token windows per scope; in-process and Redis backends implement it."""

    async def acquire(
        self, scope: str, *, rpm: int | None, tpm: int | None, tokens: int
    ) -> LimitDecision:
        """Count one request and reserve ``tokens`` if both limits have room, atomically."""
        ...

    async def adjust_tokens(self, scope: str, delta: int) -> None:
        """Settle a reservation: add ``actual - estimate`` to the tokens (floored at 0)."""
        ...

    async def aclose(self) -> None:
        """Release connections and background resources."""
        ...
