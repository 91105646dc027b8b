"""How one client surface talks to one upstream wire format.

An ``Exchange`` builds the upstream body, turns the upstream's answer into the client's,
and makes a ``StreamProcessor`` for streams. Same-format pairs relay bytes
(``passthrough.py``); cross-format pairs translate (``translated.py``).
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from otari_gateway.errors import GatewayError, UpstreamError
from otari_gateway.pipeline.request import GatewayRequest
from otari_gateway.pipeline.routing import Target
from otari_gateway.pipeline.validate import GATEWAY_ONLY_FIELDS
from otari_gateway.providers.base import Operation, UpstreamReply
from otari_gateway.providers.sse import SSEEvent
from otari_gateway.usage import Usage


class StreamProcessor(Protocol):
    """Turns upstream SSE events into client bytes and watches usage on the side."""

    def feed(self, event: SSEEvent) -> list[bytes]:
        """Client bytes for one upstream event (possibly none)."""
        ...

    def finish(self) -> list[bytes]:
        """Client bytes due after the upstream's last event but before the terminal one."""
        ...

    @property
    def complete(self) -> bool:
        """Whether the upstream sent its own end-of-stream marker."""
        ...

    @property
    def usage(self) -> Usage | None: ...

    @property
    def usage_final(self) -> bool:
        """Whether ``usage`` is the provider's count of everything generated so far (not
        Anthropic's placeholder in ``message_start``): a stream cut short is then billed on
        it as it stands."""
        ...

    def terminal(self) -> bytes:
        """The client's end-of-stream event, sent only after settlement."""
        ...

    def error_event(self, error: GatewayError) -> bytes:
        """An error in the surface's stream format (empty if one was already relayed)."""
        ...


class Exchange(Protocol):
    operation: Operation

    def upstream_body(self, request: GatewayRequest, target: Target) -> bytes:
        """The body for ``target``'s upstream, which carries ``target.model`` (the bare name)."""
        ...

    def client_reply(
        self, request: GatewayRequest, reply: UpstreamReply
    ) -> tuple[bytes, Usage]: ...

    def stream_processor(self, request: GatewayRequest, input_tokens: int) -> StreamProcessor:
        """A processor for one stream; ``input_tokens`` is the count made at admission."""
        ...


def parse_reply(reply: UpstreamReply) -> dict[str, Any]:
    """The upstream's JSON object; anything else is the provider's fault (502)."""
    try:
        parsed = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        raise UpstreamError("the provider returned a body that is not JSON") from None
    if not isinstance(parsed, dict):
        raise UpstreamError("the provider returned JSON that is not an object")
    return parsed


def parse_event_data(event: SSEEvent) -> dict[str, Any]:
    try:
        parsed = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        raise UpstreamError("the provider sent a stream event that is not JSON") from None
    if not isinstance(parsed, dict):
        raise UpstreamError("the provider sent a stream event that is not a JSON object")
    return parsed


def forwarded_body(request: GatewayRequest, model: str) -> dict[str, Any]:
    """The client's body for the upstream: bare model, gateway-only fields removed."""
    body = {k: v for k, v in request.body.items() if k not in GATEWAY_ONLY_FIELDS}
    body["model"] = model
    return body
