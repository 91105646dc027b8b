"""Structured JSON logs via structlog, rendered with orjson: one JSON object per line on
stderr, the server's own lines (uvicorn's) included.

Request handlers bind only ids, sizes and outcomes: never keys, never prompt text. The
access log (``debug`` only) shows paths without their query strings, where a client may
have put a credential.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(level: str) -> None:
    numeric = _LEVELS.get(level.lower(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(file=sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(numeric)


def _route_stdlib_logging(level: int) -> None:
    """Lines of libraries that log through ``logging`` (uvicorn's) in the same JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=_json_text),
            ],
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # Other libraries say only what went wrong: at debug, the database drivers would log
    # every statement with its parameters.
    root.setLevel(max(level, logging.WARNING))
    for name in _SERVER_LOGGERS:
        server = logging.getLogger(name)
        server.handlers = []
        server.propagate = True
        server.setLevel(level)
    access = logging.getLogger("uvicorn.access")
    access.filters = [_without_query]
    # One line per request only at debug (the server is told the same, cli.py).
    access.propagate = level <= logging.DEBUG


def _json_text(value: Any, **_: Any) -> str:
    return orjson.dumps(value).decode()


def _without_query(record: logging.LogRecord) -> bool:
    """uvicorn's access line, its path cut at ``?`` (args: client, method, path, version,
    status)."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
        record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
    return True
