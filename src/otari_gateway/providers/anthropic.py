"""Anthropic upstreams, spoken natively over ``/v1/messages``.

``api_base`` is the host root (``https://api.anthropic.com``), as in Anthropic's own SDK.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from otari_gateway.config import ProviderConfig
from otari_gateway.errors import UpstreamError
from otari_gateway.providers.base import Capabilities, DiscoveredModel, Operation, Wire
from otari_gateway.providers.http import HttpUpstream

DEFAULT_API_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

CAPABILITIES = Capabilities(wire=Wire.ANTHROPIC, operations=frozenset({Operation.MESSAGES}))

_PATHS = {Operation.MESSAGES: "/v1/messages"}
# Anthropic pages its model list (at most 1,000 a page); a few pages cover any account.
_PAGE_SIZE = "1000"
_MAX_PAGES = 5


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

    async def list_models(self) -> list[DiscoveredModel]:
        """``GET /v1/models``, following ``has_more``/``last_id`` pages."""
        models: list[DiscoveredModel] = []
        params = {"limit": _PAGE_SIZE}
        for _ in range(_MAX_PAGES):
            body = await self.get_json("/v1/models", params)
            entries = body.get("data") if isinstance(body, dict) else None
            if not isinstance(entries, list):
                raise UpstreamError(
                    f"provider '{self.instance}' listed its models in an unknown format"
                )
            models.extend(
                DiscoveredModel(entry["id"], _created(entry.get("created_at")))
                for entry in entries
                if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]
            )
            last = body.get("last_id")
            if not body.get("has_more") or not isinstance(last, str):
                break
            params = {"limit": _PAGE_SIZE, "after_id": last}
        return models


def _created(value: Any) -> int | None:
    """Anthropic's RFC 3339 ``created_at`` as Unix seconds."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value).timestamp())
    except ValueError:
        return None
