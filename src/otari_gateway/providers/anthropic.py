"""Anthropic upstreams, spoken natively over ``/v1/messages``.

``api_base`` is the host root (``https://api.anthropic.com``), as in Anthropic's own SDK.
"""

from __future__ import annotations

from typing import Any

from otari_gateway.config import ProviderConfig
from otari_gateway.providers.base import Capabilities, Operation, Wire
from otari_gateway.providers.http import HttpUpstream

DEFAULT_API_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

CAPABILITIES = Capabilities(wire=Wire.ANTHROPIC, operations=frozenset({Operation.MESSAGES}))

_PATHS = {Operation.MESSAGES: "/v1/messages"}


def read_anthropic_error(body: Any) -> tuple[str | None, str | None, str | None]:
    """``{"type": "error", "error": {"type", "message"}}``."""
    error = body.get("error", body)
    if isinstance(error, str):
        return error, None, None
    message = error.get("message")
    kind = error.get("type")
    return (
        str(message) if message is not None else None,
        None,
        str(kind) if kind is not None else None,
    )


class AnthropicProvider(HttpUpstream):
    """An instance whose upstream speaks the Anthropic Messages API."""

    capabilities = CAPABILITIES

    def __init__(self, instance: str, config: ProviderConfig, api_key: str | None) -> None:
        base_url = config.client_args.get("base_url") or config.api_base or DEFAULT_API_BASE
        headers = {"anthropic-version": str(config.client_args.get("version", API_VERSION))}
        if api_key:
            headers["x-api-key"] = api_key
        super().__init__(
            instance,
            config,
            base_url=str(base_url),
            auth_headers=headers,
            secret=api_key,
            paths=_PATHS,
            read_error=read_anthropic_error,
        )
