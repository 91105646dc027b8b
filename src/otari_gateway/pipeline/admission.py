"""Admission: who is calling. The master key is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from otari_gateway.errors import AuthenticationFailed
from otari_gateway.pipeline.request import Caller

MISSING_CREDENTIAL = "Missing Otari-Key, Authorization, or x-api-key header"


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The credential, from ``Otari-Key``, then ``Authorization: Bearer``, then ``x-api-key``."""
    value = headers.get("otari-key")
    if value:
        return _strip_bearer(value)
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    value = headers.get("x-api-key")
    return value.strip() if value and value.strip() else None


def _strip_bearer(value: str) -> str:
    scheme, found, token = value.strip().partition(" ")
    return token.strip() if found and scheme.lower() == "bearer" else value.strip()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Authenticator:
    """Checks the presented credential against the master key."""

    def __init__(self, master_key: str) -> None:
        self._master_digest = _digest(master_key)

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        token = presented_token(headers)
        if token is None:
            raise AuthenticationFailed(MISSING_CREDENTIAL, code="missing_api_key")
        # Comparing fixed-length digests keeps the comparison constant-time whatever the
        # token's length.
        if hmac.compare_digest(_digest(token), self._master_digest):
            return Caller(is_master=True)
        raise AuthenticationFailed("Invalid API key", code="invalid_api_key")
