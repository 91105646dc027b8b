"""Schema migrations through Alembic: upgrade, downgrade, current revision.

Alembic's commands are synchronous and its environment starts its own event loop, so
from async code they run in a worker thread.
"""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from otari_gateway.store.engine import create_engine

SCRIPT_LOCATION = "otari_gateway.store:migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def migrate_to(database_url: str, revision: str = "head") -> str:
    """Move the schema up or down to ``revision``; says which way it went."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    ordered = [rev.revision for rev in script.walk_revisions()]  # newest first
    current = asyncio.run(current_revision(database_url))
    target = script.get_current_head() if revision == "head" else revision
    if target == "base" or target is None:
        downgrade(database_url, "base")
        return "downgraded to base"
    resolved = script.get_revision(target)
    if resolved is None:
        raise ValueError(f"unknown revision '{revision}'")
    if current is not None and ordered.index(resolved.revision) > ordered.index(current):
        downgrade(database_url, resolved.revision)
        return f"downgraded to {resolved.revision}"
    upgrade(database_url, resolved.revision)
    return f"upgraded to {resolved.revision}"


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(database_url: str) -> str | None:
    engine = create_engine(database_url)

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, database_url, revision)
