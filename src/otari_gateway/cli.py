"""``otari`` command line: parse arguments and hand over to the server or services."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import click
import structlog
import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from otari_gateway import __version__
from otari_gateway.app import CONFIG_PATH_ENV
from otari_gateway.config import ConfigError, GatewayConfig, load_config
from otari_gateway.control.keys import KeyService
from otari_gateway.pipeline.bootstrap import bootstrap_api_key, master_key_digest
from otari_gateway.providers.registry import build_providers
from otari_gateway.store.database import Database
from otari_gateway.telemetry.logging import configure_logging

log = structlog.get_logger("otari")


@click.group()
@click.version_option(__version__, prog_name="otari")
def main() -> None:
    """Otari: an OpenAI- and Anthropic-compatible LLM gateway."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", default=None, help="Interface to bind (overrides config host).")
@click.option("--port", type=int, default=None, help="Port (overrides config port).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default=None,
)
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
def serve(
    config_path: Path | None,
    host: str | None,
    port: int | None,
    workers: int,
    log_level: str | None,
    reload: bool,
) -> None:
    """Run the gateway."""
    if log_level:
        os.environ["OTARI_LOG_LEVEL"] = log_level
    config = _load(config_path)
    configure_logging(config.log_level)
    try:
        build_providers(config, os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if config.auto_migrate:
        _migrate_in_child(config.database_url)
    # Once in this process, before workers start, so a generated credential is made and
    # shown once rather than once per worker.
    asyncio.run(_first_start(config))
    if config_path is not None:
        os.environ[CONFIG_PATH_ENV] = str(config_path.resolve())
    uvicorn.run(
        "otari_gateway.app:app_from_env",
        factory=True,
        host=host or config.host,
        port=port or config.port,
        workers=None if reload else workers,
        reload=reload,
        log_level=config.log_level,
        access_log=config.log_level == "debug",
        loop="uvloop",
        http="httptools",
        server_header=False,
        timeout_graceful_shutdown=30,
    )


async def _first_start(config: GatewayConfig) -> None:
    db = Database(config.database_url)
    try:
        await master_key_digest(db, config.master_key)
        if config.bootstrap_api_key:
            await bootstrap_api_key(db, KeyService(db, NO_LISTENERS))
    finally:
        await db.aclose()


class _NoListeners:
    """Before the server starts there are no caches to tell about changes."""

    def keys_changed(self) -> None: ...

    def users_changed(self) -> None: ...

    def pricing_changed(self) -> None: ...


NO_LISTENERS = _NoListeners()


def _load(config_path: Path | None) -> GatewayConfig:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _migrate(database_url: str, revision: str) -> str:
    outcome, failed = _migration(database_url, revision)
    if failed:
        raise click.ClickException(outcome)
    return outcome


def _migration(database_url: str, revision: str) -> tuple[str, bool]:
    """(what happened, whether it failed): plain values, so a child process can return it."""
    # Imported here: alembic adds ~9 MB to a process, and a serving one never needs it.
    from alembic.util import CommandError

    from otari_gateway.store import migrate

    try:
        return migrate.migrate_to(database_url, revision), False
    except (ValueError, CommandError, SQLAlchemyError, OSError) as exc:
        return f"migration failed: {exc}", True


_MIGRATE_URL_ENV = "OTARI_MIGRATE_DATABASE_URL"
_MIGRATE_IN_CHILD = (
    "import os, sys\n"
    "from otari_gateway.cli import _migration\n"
    f"outcome, failed = _migration(os.environ['{_MIGRATE_URL_ENV}'], 'head')\n"
    "print(outcome)\n"
    "sys.exit(1 if failed else 0)\n"
)


def _migrate_in_child(database_url: str) -> None:
    """``serve``'s auto-migration, in a short-lived child process: the serving process
    (the only worker, with ``--workers 1``) then never loads alembic. A plain subprocess,
    not multiprocessing, which would leave its resource-tracker process running beside
    the server. The URL travels in the environment, never on a command line."""
    env = {**os.environ, _MIGRATE_URL_ENV: database_url}
    done = subprocess.run(
        [sys.executable, "-c", _MIGRATE_IN_CHILD], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        last_error_line = (done.stderr.strip().splitlines() or ["migration failed"])[-1]
        raise click.ClickException(done.stdout.strip() or last_error_line)


@main.command("init-db")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
def init_db(config_path: Path | None) -> None:
    """Create the database schema (or bring it to the latest revision)."""
    config = _load(config_path)
    click.echo(_migrate(config.database_url, "head"))


@main.command("migrate")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--revision", default="head", show_default=True, help="Target revision, or base.")
def migrate_command(config_path: Path | None, revision: str) -> None:
    """Upgrade or downgrade the schema to a revision."""
    config = _load(config_path)
    click.echo(_migrate(config.database_url, revision))


if __name__ == "__main__":
    sys.exit(main())
