"""Real databases for tests: a fresh SQLite file or a fresh PostgreSQL database, migrated.

PostgreSQL is the one on 127.0.0.1:5432 (trust auth, user postgres); each call creates a
uniquely named database and drops it afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import asyncpg

from otari_gateway.store import migrate

POSTGRES_ADMIN = os.environ.get("OTARI_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
ENGINES = ("sqlite", "postgresql")


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN + "/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def fresh_database(engine: str, directory: Path) -> Iterator[str]:
    """A migrated, empty database of ``engine``; yields its URL as a user would write it."""
    if engine == "sqlite":
        url = f"sqlite:///{directory / ('otari-' + secrets.token_hex(4) + '.db')}"
        migrate.upgrade(url)
        yield url
        return
    name = "otari_test_" + secrets.token_hex(6)
    anyio.run(_admin, f'CREATE DATABASE "{name}"')
    url = f"{POSTGRES_ADMIN}/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        anyio.run(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
