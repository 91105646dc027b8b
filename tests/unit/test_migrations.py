"""Migrations reach head and go back to base on both engines, and match the models."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from otari_gateway.store import migrate
from otari_gateway.store.engine import create_engine
from otari_gateway.store.models import Base
from tests.databases import ENGINES, fresh_database


async def _drift(url: str) -> list[object]:
    engine = create_engine(url)

    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("engine", ENGINES)
def test_upgrade_downgrade_and_no_drift(engine: str, tmp_path: Path) -> None:
    with fresh_database(engine, tmp_path) as url:
        assert anyio.run(migrate.current_revision, url) == migrate.head_revision()
        assert anyio.run(_drift, url) == []
        migrate.downgrade(url, "base")
        assert anyio.run(migrate.current_revision, url) is None
        migrate.upgrade(url)
        assert anyio.run(migrate.current_revision, url) == migrate.head_revision()
