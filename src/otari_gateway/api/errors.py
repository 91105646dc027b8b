"""Error responses in the envelope each surface promises, and the app-wide handlers.

OpenAI's envelope everywhere except ``/v1/messages``, which gets Anthropic's; never
FastAPI's bare ``{"detail": …}`` and never a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import orjson
import structlog
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from otari_gateway.api.inputs import not_json
from otari_gateway.control.outage import DATABASE_ERRORS, unavailable
from otari_gateway.errors import (
    AuthenticationFailed,
    GatewayError,
    InternalError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RequestTooLarge,
    ServiceUnavailable,
)
from otari_gateway.pipeline.envelopes import anthropic_error_body, openai_error_body

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Otari-Request-ID"
# Where each official SDK looks for a request id (``response._request_id``, and on errors
# ``request_id``): OpenAI's reads x-request-id, Anthropic's request-id.
_SDK_REQUEST_ID_HEADERS = {"openai": "x-request-id", "anthropic": "request-id"}

# Declared on every router whose handlers read the database.
DATABASE_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "The gateway's database is unavailable"}
}


class Envelope(Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def request_id_headers(request_id: str, envelope: Envelope) -> dict[str, str]:
    """The gateway's request id (the usage row's id), also where the surface's SDK reads it."""
    return {REQUEST_ID_HEADER: request_id, _SDK_REQUEST_ID_HEADERS[envelope.value]: request_id}


def error_response(
    error: GatewayError, envelope: Envelope, request_id: str | None = None, *, path: str = ""
) -> Response:
    # The request id (when the request has one) is what a client reports; the path says
    # which surface refused it.
    context = {"request_id": request_id} if request_id else {}
    log.log(
        error.log_level,
        "request.refused",
        status=error.status,
        error=error.message,
        path=path,
        **context,
    )
    body = (
        anthropic_error_body(error) if envelope is Envelope.ANTHROPIC else openai_error_body(error)
    )
    headers = dict(error.headers)
    if request_id:
        headers.update(request_id_headers(request_id, envelope))
    return Response(
        orjson.dumps(body), status_code=error.status, media_type="application/json", headers=headers
    )


def _refused(request: Request, error: GatewayError) -> Response:
    path = request.url.path
    return error_response(error, envelope_for_path(path), path=path)


def envelope_for_path(path: str) -> Envelope:
    return Envelope.ANTHROPIC if path.startswith("/v1/messages") else Envelope.OPENAI


_HTTP_STATUS_ERRORS: dict[int, Callable[[str], GatewayError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    413: RequestTooLarge,
    503: ServiceUnavailable,
}


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _refused(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    make = _HTTP_STATUS_ERRORS.get(exc.status_code)
    if exc.status_code == 405:
        error: GatewayError = InvalidRequest(f"method {request.method} is not allowed here")
        response = _refused(request, error)
        response.status_code = 405
        return response
    if exc.status_code == 404:
        error = NotFound(f"no route for {request.method} {request.url.path}")
    elif make is not None:
        error = make(str(exc.detail))
    else:
        error = InvalidRequest(str(exc.detail))
    return _refused(request, error)


def _problem(item: Mapping[str, Any]) -> tuple[str, str | None]:
    """One validation failure as message text, and the field it concerns (if any)."""
    loc = tuple(item.get("loc", ()))
    if item.get("type") == "json_invalid" and loc[:1] == ("body",):
        # FastAPI's own parse failure: the second element is a character offset, not a field.
        position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        return not_json(str((item.get("ctx") or {}).get("error", "")), position), None
    where = ".".join(str(part) for part in loc if part != "body")
    field = ".".join(str(part) for part in loc[1:]) or None
    message = str(item.get("msg"))
    return (f"{where}: {message}" if where else message), field


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [_problem(item) for item in exc.errors()]
    param = next((field for _, field in problems if field is not None), None)
    message = "; ".join(text for text, _ in problems) or "invalid request"
    error = InvalidRequest(message, param=param)
    return _refused(request, error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return _refused(request, unexpected_error(exc, request.url.path))


def unexpected_error(exc: Exception, path: str, request_id: str | None = None) -> GatewayError:
    """A failure no layer answered: a 503 when the database cannot be reached (an uncached
    key's lookup, say), else a 500 whose trace goes to the log only."""
    error = unavailable(exc)
    if error is not None:
        return error
    log.exception("request.crashed", path=path, request_id=request_id)
    return InternalError("internal error in the gateway")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Callable[[Request, Exception], object]] = {
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    RequestValidationError: _validation_error,
    # Named by class so that they are answered where they are raised; the catch-all below
    # answers too, but then hands the exception on to the server, which logs a plain-text
    # traceback for what is only the database being away.
    **dict.fromkeys(DATABASE_ERRORS, _unexpected),
    Exception: _unexpected,
}
