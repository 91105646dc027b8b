"""What an upstream's answer says about itself, read alike from every wire format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otari_gateway.translate.errors import UpstreamStreamError


def reported_model(payload: Mapping[str, Any], fallback: str) -> str:
    """The model the upstream says answered (what a same-format relay shows the client);
    ``fallback`` when it names none."""
    model = payload.get("model")
    return model if isinstance(model, str) and model else fallback


def read_chat_chunk(chunk: Mapping[str, Any]) -> tuple[list[Any], Mapping[str, Any] | None]:
    """A streamed Chat chunk's choices and its usage (None when it carries none); an error
    the upstream sent as a chunk raises ``UpstreamStreamError``."""
    if chunk.get("error"):
        raise UpstreamStreamError.from_payload(chunk["error"])
    usage = chunk.get("usage")
    return chunk.get("choices") or [], usage if isinstance(usage, Mapping) else None


def opens_stream(choices: list[Any], usage: Mapping[str, Any] | None) -> bool:
    """Whether a Chat chunk can open the client's stream: Azure leads with a chunk of
    content-filter results that carries neither choices nor usage, nor names a model."""
    return bool(choices) or usage is not None
