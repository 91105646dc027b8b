"""Telling "the database cannot be reached" apart from every other database error.

A refused connection or a failed name lookup surfaces from the driver as a plain
``OSError`` (asyncpg connects outside SQLAlchemy's wrapping); a pool with no connection
free in time is SQLAlchemy's ``TimeoutError``; a lost connection is an
``OperationalError`` or ``InterfaceError``; and PostgreSQL refusing the connection itself
(database or role missing, too many connections, shutting down) is a ``DBAPIError`` whose
SQLSTATE class says so.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# What a caller must catch to ask ``unreachable_reason`` about it.
DATABASE_ERRORS: tuple[type[Exception], ...] = (OSError, SQLAlchemyError)

# SQLSTATE classes: 08 connection exception, 28 invalid authorization, 3D no such
# database, 53 insufficient resources (too many connections, disk full), 57P shutdown or
# not yet accepting connections.
_UNREACHABLE_STATES = ("08", "28", "3D", "53", "57P")


def unreachable_reason(exc: BaseException) -> str | None:
    """The driver's account of why the database cannot be used, when ``exc`` means it
    cannot be reached; None for any other error (a bad statement, a constraint …)."""
    if isinstance(exc, OSError | PoolTimeout | OperationalError | InterfaceError):
        return _reason(exc)
    if isinstance(exc, DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        if exc.connection_invalidated or state.startswith(_UNREACHABLE_STATES):
            return _reason(exc)
    return None


def _reason(exc: BaseException) -> str:
    # The driver's own exception, not SQLAlchemy's wrapper, whose text carries the statement.
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(cause).__name__}: {cause}"
