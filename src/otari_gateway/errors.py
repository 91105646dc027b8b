"""The gateway's one exception tree.

Every failure a client can see is a ``GatewayError`` subclass that declares its HTTP
status, its OpenAI error ``type`` and its log level. The Anthropic error type follows from
the status (API.md), so a subclass cannot get the two envelopes out of step. Errors are
mapped to envelopes once, at the HTTP edge (``api/errors.py``).
"""

from __future__ import annotations

import logging
from typing import ClassVar

ANTHROPIC_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """Base: a failure with a status, a client-safe message and envelope types."""

    status: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"
    log_level: ClassVar[int] = logging.ERROR

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def anthropic_type(self) -> str:
        if self.status >= 500:
            return "api_error"
        return ANTHROPIC_TYPE_BY_STATUS.get(self.status, "invalid_request_error")


class InvalidRequest(GatewayError):
    status = 400
    openai_type = "invalid_request_error"
    log_level = logging.INFO


class AuthenticationFailed(GatewayError):
    status = 401
    openai_type = "authentication_error"
    log_level = logging.INFO


class PaymentRequired(GatewayError):
    status = 402
    openai_type = "invalid_request_error"
    log_level = logging.INFO


class PermissionDenied(GatewayError):
    status = 403
    openai_type = "permission_error"
    log_level = logging.INFO


class NotFound(GatewayError):
    status = 404
    openai_type = "not_found_error"
    log_level = logging.INFO


class Conflict(GatewayError):
    """The write contradicts the current state (a duplicate, or a row still in use)."""

    status = 409
    openai_type = "conflict_error"
    log_level = logging.INFO


class RequestTooLarge(GatewayError):
    status = 413
    openai_type = "invalid_request_error"
    log_level = logging.INFO


class RateLimited(GatewayError):
    status = 429
    openai_type = "rate_limit_error"
    log_level = logging.INFO


class InternalError(GatewayError):
    """A bug in the gateway: the message shown is generic, the cause goes to the log."""

    status = 500
    openai_type = "server_error"
    log_level = logging.ERROR


class UpstreamError(GatewayError):
    """The provider failed or could not be reached (502)."""

    status = 502
    openai_type = "upstream_error"
    log_level = logging.WARNING


class UpstreamAuthError(UpstreamError):
    """The provider rejected the gateway's own credentials: an operator problem."""

    log_level = logging.ERROR


class UpstreamTimeout(UpstreamError):
    status = 504
    openai_type = "timeout_error"


class UpstreamBadRequest(InvalidRequest):
    """The provider refused the request as invalid (its 400/422)."""


class UpstreamNotFound(NotFound):
    """The provider does not know the model or path (its 404)."""


class UpstreamRateLimited(RateLimited):
    """The provider throttled us; its ``Retry-After`` is kept."""


class ServiceUnavailable(GatewayError):
    status = 503
    openai_type = "server_error"
    log_level = logging.WARNING


ALL_ERRORS: tuple[type[GatewayError], ...] = (
    InvalidRequest,
    AuthenticationFailed,
    PaymentRequired,
    PermissionDenied,
    NotFound,
    Conflict,
    RequestTooLarge,
    RateLimited,
    InternalError,
    UpstreamError,
    UpstreamAuthError,
    UpstreamTimeout,
    UpstreamBadRequest,
    UpstreamNotFound,
    UpstreamRateLimited,
    ServiceUnavailable,
)
