"""Same-format exchanges: the upstream's bytes reach the client unchanged.

The relay reads usage on the side, parsing only the few events that carry it, and holds
back the upstream's terminal event until settlement is done.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any

import orjson

from otari_gateway.errors import GatewayError
from otari_gateway.pipeline import envelopes
from otari_gateway.pipeline.exchange import forwarded_body, parse_event_data, parse_reply
from otari_gateway.pipeline.request import GatewayRequest
from otari_gateway.pipeline.routing import Target
from otari_gateway.providers.base import Operation, UpstreamReply
from otari_gateway.providers.sse import SSEEvent
from otari_gateway.translate.usage import usage_from_chat, usage_from_messages, usage_from_responses
from otari_gateway.usage import Usage

# OpenAI puts `"usage": null` on every chunk once include_usage is on; only a non-null
# usage object is worth parsing.
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


class _JsonPassthrough:
    """Non-streaming relay shared by every same-format pair; usage from ``usage``."""

    def __init__(self, operation: Operation, read_usage: Any) -> None:
        self.operation = operation
        self._read_usage = read_usage

    def upstream_body(self, request: GatewayRequest, target: Target) -> bytes:
        return orjson.dumps(forwarded_body(request, target.model))

    def client_reply(self, request: GatewayRequest, reply: UpstreamReply) -> tuple[bytes, Usage]:
        usage: Usage = self._read_usage(parse_reply(reply).get("usage"))
        return reply.body, usage


class _RelayedStream(ABC):
    """What every byte-relaying stream shares: usage seen so far, the upstream's own
    terminal event held back, and no second error event after one the upstream sent."""

    default_terminal = b""

    def __init__(self) -> None:
        self._usage: Usage | None = None
        self._terminal: bytes | None = None
        self._relayed_error = False

    def finish(self) -> list[bytes]:
        return []

    @property
    def complete(self) -> bool:
        return self._terminal is not None

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def usage_final(self) -> bool:
        # OpenAI's usage comes at the end (or, from some servers, cumulative on every chunk).
        return self._usage is not None

    def terminal(self) -> bytes:
        return self._terminal or self.default_terminal

    def error_event(self, error: GatewayError) -> bytes:
        return b"" if self._relayed_error else self._error_event(error)

    @abstractmethod
    def _error_event(self, error: GatewayError) -> bytes: ...


class ChatPassthrough(_JsonPassthrough):
    def __init__(self) -> None:
        super().__init__(Operation.CHAT, usage_from_chat)

    def upstream_body(self, request: GatewayRequest, target: Target) -> bytes:
        body = forwarded_body(request, target.model)
        if request.stream:
            # Usage is always asked for upstream, so a stream can be billed exactly; the
            # extra chunk is dropped again for a client that did not ask for it.
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        return orjson.dumps(body)

    def stream_processor(self, request: GatewayRequest, input_tokens: int) -> ChatStream:
        options = request.body.get("stream_options") or {}
        return ChatStream(client_wants_usage=bool(options.get("include_usage")))


class ChatStream(_RelayedStream):
    default_terminal = envelopes.DONE

    def __init__(self, *, client_wants_usage: bool) -> None:
        super().__init__()
        self._client_wants_usage = client_wants_usage

    def feed(self, event: SSEEvent) -> list[bytes]:
        data = event.data
        if data == b"[DONE]":
            self._terminal = event.raw
            return []
        if _USAGE_OBJECT.search(data):
            chunk = parse_event_data(event)
            self._usage = usage_from_chat(chunk.get("usage"))
            if not chunk.get("choices") and not self._client_wants_usage:
                return []
        elif data.startswith(b'{"error"'):
            self._relayed_error = True
        return [event.raw]

    def _error_event(self, error: GatewayError) -> bytes:
        return envelopes.chat_error_event(error)


class MessagesPassthrough(_JsonPassthrough):
    def __init__(self) -> None:
        super().__init__(Operation.MESSAGES, usage_from_messages)

    def stream_processor(self, request: GatewayRequest, input_tokens: int) -> MessagesStream:
        return MessagesStream()


class MessagesStream(_RelayedStream):
    """Anthropic events: usage in ``message_start`` and (cumulative) ``message_delta``."""

    default_terminal = envelopes.MESSAGE_STOP

    def __init__(self) -> None:
        super().__init__()
        self._usage_fields: dict[str, Any] = {}
        self._delta_usage = False

    def feed(self, event: SSEEvent) -> list[bytes]:
        name = event.event
        if name == "message_start":
            message = parse_event_data(event).get("message") or {}
            self._usage_fields.update(message.get("usage") or {})
        elif name == "message_delta":
            reported = parse_event_data(event).get("usage") or {}
            self._usage_fields.update(reported)
            self._delta_usage = self._delta_usage or bool(reported)
        elif name == "message_stop":
            self._terminal = event.raw
            return []
        elif name == "error":
            self._relayed_error = True
        return [event.raw]

    @property
    def usage(self) -> Usage | None:
        return usage_from_messages(self._usage_fields) if self._usage_fields else None

    @property
    def usage_final(self) -> bool:
        return self._delta_usage

    def _error_event(self, error: GatewayError) -> bytes:
        return envelopes.messages_error_event(error)


class ResponsesPassthrough(_JsonPassthrough):
    def __init__(self) -> None:
        super().__init__(Operation.RESPONSES, usage_from_responses)

    def stream_processor(self, request: GatewayRequest, input_tokens: int) -> ResponsesStream:
        return ResponsesStream()


_RESPONSES_TERMINALS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesStream(_RelayedStream):
    """Responses events: the first names the response, the terminal one carries the whole
    response and its usage."""

    def __init__(self) -> None:
        super().__init__()
        # OpenAI numbers a stream's events from 0, one apart: a gateway error event takes
        # the next number without parsing every relayed event for it.
        self._events = 0
        self.response_id: str | None = None

    def feed(self, event: SSEEvent) -> list[bytes]:
        self._events += 1
        name = event.event or _type_of(event)
        if name == "response.created":
            created = parse_event_data(event).get("response") or {}
            found = created.get("id") if isinstance(created, dict) else None
            self.response_id = found if isinstance(found, str) and found else None
        elif name in _RESPONSES_TERMINALS:
            response = parse_event_data(event).get("response") or {}
            self._usage = usage_from_responses(response.get("usage"))
            self._terminal = event.raw
            return []
        if name == "error":
            self._relayed_error = True
        return [event.raw]

    def _error_event(self, error: GatewayError) -> bytes:
        return envelopes.responses_error_event(error, self._events)


def _type_of(event: SSEEvent) -> str:
    """Some servers omit the ``event:`` line; the type is then only in the data."""
    if b'"type"' not in event.data:
        return ""
    kind = parse_event_data(event).get("type")
    return kind if isinstance(kind, str) else ""


class EmbeddingsPassthrough(_JsonPassthrough):
    def __init__(self) -> None:
        super().__init__(Operation.EMBEDDINGS, usage_from_chat)

    def stream_processor(self, request: GatewayRequest, input_tokens: int) -> ChatStream:
        raise AssertionError("embeddings are never streamed")


CHAT = ChatPassthrough()
MESSAGES = MessagesPassthrough()
RESPONSES = ResponsesPassthrough()
EMBEDDINGS = EmbeddingsPassthrough()
