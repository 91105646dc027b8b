"""``otari`` command line: parse arguments and hand over to the server or services."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click
import structlog
import uvicorn

from otari_gateway import __version__
from otari_gateway.app import CONFIG_PATH_ENV
from otari_gateway.config import ConfigError, load_config
from otari_gateway.providers.registry import build_providers
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
    try:
        config = load_config(config_path)
        configure_logging(config.log_level)
        build_providers(config, os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not config.master_key:
        # Generated once here, before workers fork, so every worker accepts the same key.
        os.environ["OTARI_MASTER_KEY"] = "sk-otari-" + secrets.token_urlsafe(32)
        log.warning(
            "master_key.generated",
            master_key=os.environ["OTARI_MASTER_KEY"],
            hint="set master_key in the config to keep it across restarts",
        )
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


if __name__ == "__main__":
    sys.exit(main())
