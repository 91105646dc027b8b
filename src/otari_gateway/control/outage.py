"""The management services' database sessions: an unreachable database is a 503.

With the database down every management call fails; the client is told the gateway's
database is unavailable (worth retrying, and not its fault) rather than getting a 500
"internal error", and the driver's account, which may name the host, stays in the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

import structlog

from otari_gateway.errors import ServiceUnavailable
from otari_gateway.store.availability import DATABASE_ERRORS, unreachable_reason

log = structlog.get_logger(__name__)

T = TypeVar("T")

__all__ = ["DATABASE_ERRORS", "UNAVAILABLE", "available", "unavailable"]

UNAVAILABLE = "the gateway's database is unavailable"


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 for ``exc`` when it means the database cannot be reached, else None."""
    if not isinstance(exc, DATABASE_ERRORS):
        return None
    reason = unreachable_reason(exc)
    if reason is None:
        return None
    log.warning("database.unavailable", reason=reason)
    return ServiceUnavailable(UNAVAILABLE, code="database_unavailable")


@asynccontextmanager
async def available(opened: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """``opened`` (a session), with a failure to reach the database raised as a 503."""
    try:
        async with opened as value:
            yield value
    except DATABASE_ERRORS as exc:
        error = unavailable(exc)
        if error is None:
            raise
        raise error from exc
