"""Dialect-specific ``INSERT … ON CONFLICT``: the one statement SQLite and PostgreSQL spell apart.

Both engines accept the same conflict clause; only the insert construct comes from a
different SQLAlchemy dialect module, chosen here from the session's bind.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, table: Table) -> Any:
    """An insert supporting ``on_conflict_do_nothing`` / ``on_conflict_do_update``.

    Typed ``Any`` because the two dialects' insert classes share no common base that
    declares the conflict methods.
    """
    # Imported on use: a gateway on SQLite never loads the PostgreSQL dialect (2.3 MB).
    if session.get_bind().dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    from sqlalchemy.dialects import postgresql

    return postgresql.insert(table)
