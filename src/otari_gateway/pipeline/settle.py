"""Settlement: what happens once a request's outcome is known.

Every request ends in exactly one ``settle`` call — success, upstream error, client
disconnect — and streams settle *before* their terminal event is sent, because clients
hang up as soon as they read it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import structlog

from otari_gateway.pipeline.request import GatewayRequest
from otari_gateway.pipeline.routing import Target
from otari_gateway.usage import Usage

log = structlog.get_logger("otari.requests")


@dataclass(frozen=True, slots=True)
class Outcome:
    request: GatewayRequest
    target: Target | None
    usage: Usage | None
    status: int
    error: str | None = None
    completed: bool = True

    @property
    def latency_ms(self) -> int:
        return int((time.monotonic() - self.request.received_at) * 1000)


class Settler(Protocol):
    async def settle(self, outcome: Outcome) -> None: ...


class LogSettler:
    """Records each outcome as one structured log line (no prompt text, no keys)."""

    async def settle(self, outcome: Outcome) -> None:
        usage = outcome.usage or Usage()
        log.debug(
            "request.settled",
            request_id=outcome.request.request_id,
            surface=outcome.request.surface.value,
            provider=outcome.target.instance if outcome.target else None,
            model=outcome.target.model if outcome.target else outcome.request.model,
            status=outcome.status,
            completed=outcome.completed,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_ms=outcome.latency_ms,
            error=outcome.error,
        )
