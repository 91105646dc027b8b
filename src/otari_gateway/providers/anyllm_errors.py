"""Turn any-llm's failures into the gateway's error tree, with credentials scrubbed.

The providers are created with ``unified_exceptions=True``, so a provider SDK's exception
arrives as an ``AnyLLMError`` subclass that carries the HTTP status the upstream answered
(when there was one). The status decides, exactly as for the HTTP adapters; the exception
class decides only when there was no HTTP answer (timeouts, refused connections, checks
any-llm makes before sending anything).
"""

from __future__ import annotations

from any_llm.exceptions import (
    AnyLLMError,
    AuthenticationError,
    ContentFilterError,
    ContextLengthExceededError,
    GatewayTimeoutError,
    InvalidRequestError,
    MissingApiKeyError,
    ModelNotFoundError,
    RateLimitError,
    UnsupportedParameterError,
)

from otari_gateway.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from otari_gateway.providers.http import client_message, map_status


def missing_extra(instance: str, type_name: str, extra: str) -> InvalidRequest:
    """The answer for an instance whose provider SDK is not installed."""
    return InvalidRequest(
        f"provider '{instance}' ({type_name}) needs an optional dependency that is not "
        f"installed: pip install 'otari-gateway[{extra}]'",
        param="model",
        code="provider_not_installed",
    )


def timed_out(instance: str, seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(f"provider '{instance}' did not answer within {seconds:g} seconds")


def map_sdk_error(exc: Exception, instance: str, secrets: tuple[str, ...]) -> GatewayError:
    """The gateway error for anything an any-llm call raised."""
    if isinstance(exc, NotImplementedError):
        return InvalidRequest(
            f"provider '{instance}' does not support this request: {exc}",
            code="unsupported_endpoint",
        )
    if not isinstance(exc, AnyLLMError):
        # Raised outside any-llm's conversion: a bug or a reply the SDK could not read.
        if _is_timeout(exc):
            return UpstreamTimeout(f"provider '{instance}' timed out")
        return UpstreamError(f"provider '{instance}' failed ({type(exc).__name__})")
    message = _message(exc, secrets)
    if isinstance(exc, MissingApiKeyError | AuthenticationError):
        return UpstreamAuthError(
            f"the provider '{instance}' rejected the gateway's credentials", code="upstream_auth"
        )
    status = exc.status_code or _boto_status(exc.original_exception)
    if status is not None and status >= 400:
        retry_after = exc.retry_after if isinstance(exc, RateLimitError) else None
        return map_status(
            status,
            message,
            exc.param,
            exc.code,
            retry_after=retry_after,
            instance=instance,
        )
    return _map_by_class(exc, message, instance)


def _map_by_class(exc: AnyLLMError, message: str, instance: str) -> GatewayError:
    if isinstance(exc, RateLimitError):
        headers = {"Retry-After": exc.retry_after} if exc.retry_after else None
        return UpstreamRateLimited(message, code=exc.code, headers=headers)
    if isinstance(exc, UnsupportedParameterError):
        return InvalidRequest(message, code="unsupported_parameter")
    if isinstance(exc, InvalidRequestError | ContextLengthExceededError | ContentFilterError):
        return UpstreamBadRequest(message, param=exc.param, code=exc.code)
    if isinstance(exc, ModelNotFoundError):
        return UpstreamNotFound(message, param=exc.param, code=exc.code)
    if isinstance(exc, GatewayTimeoutError) or _is_timeout(exc):
        return UpstreamTimeout(f"provider '{instance}' timed out: {message}")
    return UpstreamError(f"provider '{instance}' failed: {message}")


def _boto_status(original: Exception | None) -> int | None:
    """botocore's ``ClientError`` keeps the status in a dict any-llm does not read."""
    response = getattr(original, "response", None)
    if not isinstance(response, dict):
        return None
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


def _is_timeout(exc: BaseException) -> bool:
    """Whether a timeout is anywhere in the exception's chain.

    SDKs spell it differently (httpx ``ReadTimeout``, botocore ``ReadTimeoutError``, the
    builtin ``TimeoutError``); their class names all say so.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError) or "timeout" in type(current).__name__.lower():
            return True
        original = getattr(current, "original_exception", None)
        current = original or current.__cause__ or current.__context__
    return False


def _message(exc: AnyLLMError, secrets: tuple[str, ...]) -> str:
    return client_message(exc.message, secrets)
