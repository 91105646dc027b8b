"""What the pipeline is handed: a frozen, parsed request and who made it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from otari_gateway.store.access import KeyRecord


class Surface(StrEnum):
    """The client-facing API a request arrived on; it fixes formats and error envelopes."""

    CHAT = "chat"
    MESSAGES = "messages"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    MODERATIONS = "moderations"
    RERANK = "rerank"
    IMAGES = "images"
    SPEECH = "audio_speech"
    TRANSCRIPTIONS = "audio_transcriptions"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated principal: the master key, or a virtual key and its user."""

    is_master: bool
    key: KeyRecord | None = None
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """One generation request after parsing and validation.

    ``body`` is the client's parsed JSON and is never mutated: exchanges build the upstream
    body as a new mapping.
    """

    surface: Surface
    request_id: str
    caller: Caller
    model: str
    stream: bool
    body: Mapping[str, Any]
    forward_headers: Mapping[str, str] = field(default_factory=dict)
    received_at: float = field(default_factory=time.monotonic)
