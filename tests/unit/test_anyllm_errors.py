"""any-llm's exceptions become the gateway's errors: status first, then class, keys scrubbed."""

from __future__ import annotations

import pytest
from any_llm.exceptions import (
    AnyLLMError,
    AuthenticationError,
    ContextLengthExceededError,
    MissingApiKeyError,
    ModelNotFoundError,
    ProviderError,
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
from otari_gateway.providers.anyllm_errors import map_sdk_error, missing_extra

SECRET = "AIzaSecretSecretSecretSecret0000"


def _map(exc: Exception) -> GatewayError:
    return map_sdk_error(exc, "gem", (SECRET,))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, UpstreamBadRequest),
        (401, UpstreamAuthError),
        (403, UpstreamAuthError),
        (404, UpstreamNotFound),
        (429, UpstreamRateLimited),
        (500, UpstreamError),
        (504, UpstreamTimeout),
    ],
)
def test_the_upstream_status_decides(status: int, expected: type[GatewayError]) -> None:
    error = _map(ProviderError("upstream said no", status_code=status))
    assert type(error) is expected


def test_rate_limit_keeps_retry_after() -> None:
    exc = RateLimitError("slow down", status_code=429)
    exc.retry_after = "7"
    error = _map(exc)
    assert error.status == 429
    assert error.headers == {"Retry-After": "7"}


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (AuthenticationError("bad key"), UpstreamAuthError),
        (MissingApiKeyError("gemini", "GEMINI_API_KEY"), UpstreamAuthError),
        (ContextLengthExceededError("too long"), UpstreamBadRequest),
        (ModelNotFoundError("no such model"), UpstreamNotFound),
        (UnsupportedParameterError("seed", "cohere"), InvalidRequest),
        (ProviderError("connection refused"), UpstreamError),
    ],
)
def test_without_a_status_the_class_decides(exc: AnyLLMError, expected: type) -> None:
    assert type(_map(exc)) is expected


def test_a_timeout_anywhere_in_the_chain_is_a_504() -> None:
    class ReadTimeout(Exception):
        pass

    wrapped = ProviderError("request failed", original_exception=ReadTimeout("read timed out"))
    assert isinstance(_map(wrapped), UpstreamTimeout)
    assert isinstance(_map(TimeoutError()), UpstreamTimeout)


def test_botocore_status_is_read_from_its_response() -> None:
    class ClientError(Exception):
        response = {
            "Error": {"Code": "ThrottlingException"},
            "ResponseMetadata": {"HTTPStatusCode": 429},
        }

    error = _map(ProviderError("throttled", original_exception=ClientError("throttled")))
    assert isinstance(error, UpstreamRateLimited)


def test_credentials_never_reach_the_message() -> None:
    error = _map(
        ProviderError(f"bad request for key={SECRET} and sk-live0123456789", status_code=400)
    )
    assert SECRET not in error.message
    assert "sk-live0123456789" not in error.message
    auth = _map(AuthenticationError(f"API key {SECRET} not valid", status_code=400))
    assert SECRET not in auth.message


def test_not_implemented_is_an_unsupported_endpoint() -> None:
    error = _map(NotImplementedError("Provider doesn't support embedding."))
    assert isinstance(error, InvalidRequest)
    assert error.code == "unsupported_endpoint"


def test_an_unexpected_exception_is_a_502_without_its_text() -> None:
    error = _map(RuntimeError(f"boom {SECRET}"))
    assert type(error) is UpstreamError
    assert SECRET not in error.message


def test_missing_extra_names_the_install_command() -> None:
    error = missing_extra("aws", "bedrock", "bedrock")
    assert error.status == 400
    assert "pip install 'otari-gateway[bedrock]'" in error.message
