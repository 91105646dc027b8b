"""The provider interface: one small protocol every upstream adapter implements.

An adapter knows where an operation lives on its upstream, how to authenticate, and how
to turn the upstream's failures into gateway errors. It does not know about surfaces,
translation or billing: the pipeline decides what body to send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Wire(StrEnum):
    """The request/response format an upstream speaks natively."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class Operation(StrEnum):
    """An upstream endpoint, independent of its path on a given provider."""

    CHAT = "chat"
    MESSAGES = "messages"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    MODERATIONS = "moderations"
    RERANK = "rerank"
    IMAGES = "images"
    SPEECH = "speech"
    TRANSCRIPTIONS = "transcriptions"
    # OpenAI's Files and Batches APIs: objects kept at the upstream (``RestUpstream.call``).
    FILES = "files"
    BATCHES = "batches"


# Answers relayed with the upstream's own Content-Type: audio, or the plain text, SRT and
# VTT formats a transcription can be asked for. Every other operation answers JSON.
RAW_REPLY_OPERATIONS = frozenset({Operation.SPEECH, Operation.TRANSCRIPTIONS})


@dataclass(frozen=True, slots=True)
class Capabilities:
    wire: Wire
    operations: frozenset[Operation]
    # OpenAI's own API (OpenAI, Azure OpenAI), not a server that copies its wire format: it
    # wants max_completion_tokens (its reasoning models refuse max_tokens) and refuses
    # reasoning_effort for models that do not reason. Translated requests adapt to that.
    openai_platform: bool = False


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A complete (non-streamed) successful upstream answer."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    """One model an upstream lists; ``created`` is Unix seconds when the upstream says."""

    id: str
    created: int | None = None


@runtime_checkable
class ModelLister(Protocol):
    """An adapter that can ask its upstream which models it serves (``GET /models``).

    Separate from ``Provider`` so an adapter without a listing endpoint simply is not
    discovered.
    """

    async def list_models(self) -> list[DiscoveredModel]:
        """The upstream's models; failures raise the mapped ``GatewayError``.

        The caller bounds the wait (``asyncio.timeout``): discovery must not take a
        generation call's long timeout.
        """
        ...


@runtime_checkable
class RestUpstream(Protocol):
    """An adapter that relays plain REST calls under its base URL (OpenAI's Files and
    Batches APIs, whose objects live at the upstream)."""

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> UpstreamReply:
        """``method path``; a non-2xx answer raises the mapped ``GatewayError``."""
        ...


class Provider(Protocol):
    """One configured provider instance."""

    @property
    def instance(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    async def send(
        self,
        operation: Operation,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        model: str,
    ) -> UpstreamReply:
        """POST ``body``; a non-2xx answer raises the mapped ``GatewayError``.

        ``model`` is the bare upstream model the body was built for; most adapters find it
        in the body, but some upstreams address it in the URL (Azure OpenAI deployments).
        """
        ...

    def stream(
        self,
        operation: Operation,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        model: str,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """POST ``body`` and yield the response body in chunks as they arrive.

        Entering raises the mapped ``GatewayError`` if the upstream refuses; leaving the
        context closes the upstream connection (which is how a client disconnect cancels
        the upstream request).
        """
        ...

    async def start(self) -> None:
        """Open long-lived resources (connection pools); called once at start-up."""
        ...

    async def aclose(self) -> None: ...
