"""``otari`` command line: parse arguments and hand over to the server or services."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import click
import uvicorn

from otari_gateway import __version__
from otari_gateway.config import CONFIG_PATH_ENV, ConfigError, GatewayConfig, load_config
from otari_gateway.telemetry.logging import configure_logging

# What `serve` imports stays small: with --workers N this process only supervises the
# workers, and the database, providers and the app are imported where they are used
# (the start-up child, and each worker). It saved ~60 MB of the supervisor.


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
    # JSON from the first line on: loading the config may already warn.
    configure_logging(log_level or os.environ.get("OTARI_LOG_LEVEL") or "info")
    if config_path is None and (exported := os.environ.get(CONFIG_PATH_ENV)):
        # The workers read it from there: this process must load the same file.
        config_path = Path(exported)
    config = _load(config_path)
    configure_logging(config.log_level)
    if config_path is not None:
        os.environ[CONFIG_PATH_ENV] = str(config_path.resolve())
    _prepare_in_child()
    uvicorn.run(
        "otari_gateway.app:app_from_env",
        factory=True,
        host=config.host if host is None else host,
        port=config.port if port is None else port,
        workers=None if reload else workers,
        reload=reload,
        log_level=config.log_level,
        access_log=config.log_level == "debug",
        loop="uvloop",
        http="httptools",
        server_header=False,
        log_config=None,  # uvicorn's loggers go through ours (telemetry/logging.py): JSON
        ws="none",  # no WebSocket routes: the protocol is never loaded
        timeout_graceful_shutdown=config.shutdown_grace_seconds,
    )


def _prepare() -> tuple[str, bool]:
    """What ``serve`` does once before any worker starts: check the providers, migrate
    (when ``auto_migrate``), and make the generated credentials, so that one is made and
    shown once rather than once per worker. (what went wrong, whether it did)"""
    from sqlalchemy.exc import SQLAlchemyError

    from otari_gateway.pipeline.routing import Router
    from otari_gateway.providers.registry import build_providers

    path = os.environ.get(CONFIG_PATH_ENV)
    # The config was loaded (and its unknown keys warned about) by `serve` already.
    config = _load(None if path is None else Path(path), warn=False)
    configure_logging(config.log_level)
    try:
        # What a worker would otherwise find only as it starts, and then crash on, over and
        # over: the providers and the aliases that name them.
        Router(build_providers(config, os.environ), config.aliases)
    except ConfigError as exc:
        return str(exc), True
    if config.auto_migrate:
        outcome, failed = _migration(config.database_url, "head")
        if failed:
            return outcome, True
    try:
        asyncio.run(_first_start(config))
    except (SQLAlchemyError, OSError) as exc:
        return f"database unavailable: {type(exc).__name__}: {exc}", True
    return "", False


async def _first_start(config: GatewayConfig) -> None:
    from otari_gateway.control.keys import KeyService
    from otari_gateway.pipeline.bootstrap import bootstrap_api_key, master_key_digest
    from otari_gateway.store.database import Database

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


def _load(config_path: Path | None, *, warn: bool = True) -> GatewayConfig:
    try:
        return load_config(config_path, warn=warn)
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
    from sqlalchemy.exc import SQLAlchemyError

    from otari_gateway.store import migrate

    try:
        return migrate.migrate_to(database_url, revision), False
    except (ValueError, CommandError, SQLAlchemyError, OSError) as exc:
        return f"migration failed: {exc}", True


_PREPARE_IN_CHILD = (
    "import sys\n"
    "from otari_gateway.cli import _prepare\n"
    "problem, failed = _prepare()\n"
    "print(problem)\n"
    "sys.exit(1 if failed else 0)\n"
)


def _prepare_in_child() -> None:
    """``_prepare`` in a short-lived child process: the serving process then never loads
    alembic, and a supervisor of several workers not even the app. A plain subprocess,
    not multiprocessing, which would leave its resource-tracker process running beside
    the server. The child reads the same config (its path travels in the environment,
    secrets never on a command line); its log lines, the one-time credentials among
    them, go to this process's stderr."""
    done = subprocess.run(
        [sys.executable, "-c", _PREPARE_IN_CHILD], stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        raise click.ClickException(done.stdout.strip() or "start-up failed (see the log above)")


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
