"""What the registry says about a provider type reached through any-llm.

Kept apart from the adapter so the registry (and the docs generator) can describe these types
without importing any-llm, which costs seconds at start-up and is loaded only when an
instance of such a type is configured.
"""

from __future__ import annotations

from dataclasses import dataclass

from otari_gateway.providers.base import Capabilities, Operation, Wire


@dataclass(frozen=True, slots=True)
class SdkSpec:
    """How one provider type is reached through any-llm."""

    name: str
    """any-llm's provider key."""
    extra: str | None
    """The ``otari-gateway[...]`` extra that installs its SDK (None: nothing to install)."""
    chat: bool = True
    embeddings: bool = False
    rerank: bool = False
    boto: bool = False
    """The SDK is boto3: blocking streams run on a worker thread, and the instance's
    timeouts and a no-retry policy go into a botocore ``Config``."""
    blocking: bool = False
    """any-llm's async calls for this SDK do blocking I/O (watsonx builds a client per
    request that signs in and looks the model up over blocking HTTP): every call runs on a
    worker thread with an event loop of its own."""
    api_base_arg: str | None = None
    """The client keyword that takes ``api_base`` when any-llm's own ``api_base`` is ignored
    (dotted for a key inside a mapping argument: ``http_options.base_url``)."""
    extras_arg: str | None = None
    """The call keyword through which the SDK sends body fields it does not model (Azure AI
    Inference's ``model_extras``). any-llm drops ``stream_options`` for such an SDK, and
    without it the upstream reports no usage on a stream, so it goes through this one."""
    retries_arg: str | None = None
    """The client keyword for the SDK's own retry count when any-llm has no ``max_retries``
    for it (azure-core's ``retry_total``)."""
    streams: bool = True
    """False: any-llm cannot stream this provider's chat (SageMaker: it neither asks a chat
    container to stream nor reads what one streams), so a stream is the unstreamed answer
    replayed as one."""

    def capabilities(self) -> Capabilities:
        operations = {Operation.CHAT} if self.chat else set()
        if self.embeddings:
            operations.add(Operation.EMBEDDINGS)
        if self.rerank:
            operations.add(Operation.RERANK)
        return Capabilities(Wire.OPENAI, frozenset(operations))
