"""Cross-format exchanges: OpenAI Chat clients on Anthropic, Messages clients on OpenAI.

The conversions themselves are pure functions in ``translate/``; this module adapts them
to the exchange and stream-processor protocols and maps translation failures to errors.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from otari_gateway.errors import GatewayError, InvalidRequest, UpstreamError
from otari_gateway.pipeline import envelopes
from otari_gateway.pipeline.exchange import parse_event_data, parse_reply
from otari_gateway.pipeline.request import GatewayRequest
from otari_gateway.pipeline.routing import Target
from otari_gateway.pipeline.validate import GATEWAY_ONLY_FIELDS
from otari_gateway.providers.base import Operation, UpstreamReply
from otari_gateway.providers.http import client_message
from otari_gateway.providers.sse import SSEEvent
from otari_gateway.translate.chat_stream import MessagesToChatStream
from otari_gateway.translate.chat_to_messages import (
    chat_request_to_messages,
    messages_response_to_chat,
)
from otari_gateway.translate.errors import TranslationError, UpstreamStreamError
from otari_gateway.translate.messages_stream import ChatToMessagesStream
from otari_gateway.translate.messages_to_chat import (
    chat_response_to_messages,
    messages_request_to_chat,
)
from otari_gateway.translate.structured_output import wants_json
from otari_gateway.translate.usage import usage_from_chat, usage_from_messages
from otari_gateway.usage import Usage

# Anthropic requires max_tokens; an OpenAI client that sets none gets this ceiling.
DEFAULT_MAX_TOKENS = 4096


def _client_body(request: GatewayRequest) -> dict[str, Any]:
    return {k: v for k, v in request.body.items() if k not in GATEWAY_ONLY_FIELDS}


def upstream_answer(reply: UpstreamReply) -> dict[str, Any]:
    """The upstream's JSON answer. Some servers send an error object with status 200; it is
    the provider's failure, not an empty answer to bill as a success."""
    answer = parse_reply(reply)
    if answer.get("error"):
        failure = UpstreamStreamError.from_payload(answer["error"])
        raise UpstreamError(
            f"the provider answered with an error: {client_message(failure.message, ())}"
        )
    return answer


def stream_failure(exc: UpstreamStreamError) -> UpstreamError:
    # Scrubbed and bounded like every other upstream text a client sees.
    message = client_message(exc.message, ())
    return UpstreamError(f"the provider reported an error mid-stream: {message}")


class ChatViaMessages:
    """An OpenAI Chat client, an Anthropic upstream."""

    operation = Operation.MESSAGES

    def upstream_body(self, request: GatewayRequest, target: Target) -> bytes:
        try:
            body = chat_request_to_messages(
                _client_body(request), target.model, default_max_tokens=DEFAULT_MAX_TOKENS
            )
        except TranslationError as exc:
            raise InvalidRequest(str(exc)) from None
        return orjson.dumps(body)

    def client_reply(self, request: GatewayRequest, reply: UpstreamReply) -> tuple[bytes, Usage]:
        message = upstream_answer(reply)
        chat = messages_response_to_chat(
            message,
            request.model,
            created=int(time.time()),
            json_answer=wants_json(request.body.get("response_format")),
        )
        return orjson.dumps(chat), usage_from_messages(message.get("usage"))

    def stream_processor(
        self, request: GatewayRequest, input_tokens: int
    ) -> ChatFromMessagesStream:
        options = request.body.get("stream_options") or {}
        return ChatFromMessagesStream(
            MessagesToChatStream(
                request.model,
                created=int(time.time()),
                include_usage=bool(options.get("include_usage")),
                json_answer=wants_json(request.body.get("response_format")),
            )
        )


class ChatFromMessagesStream:
    def __init__(self, translator: MessagesToChatStream) -> None:
        self._translator = translator
        self._done = False
        self._started = False

    def feed(self, event: SSEEvent) -> list[bytes]:
        data = parse_event_data(event)
        kind = data.get("type") or event.event
        if kind == "message_stop":
            self._done = True
            return []
        if kind == "message_start":
            self._started = True
        try:
            chunks = self._translator.feed(data)
        except UpstreamStreamError as exc:
            raise stream_failure(exc) from None
        return [envelopes.sse_data(chunk) for chunk in chunks]

    def finish(self) -> list[bytes]:
        return [envelopes.sse_data(chunk) for chunk in self._translator.finish()]

    @property
    def complete(self) -> bool:
        return self._done

    @property
    def usage(self) -> Usage | None:
        return self._translator.usage if self._started else None

    @property
    def usage_final(self) -> bool:
        return self._translator.usage_final

    def terminal(self) -> bytes:
        return envelopes.DONE

    def error_event(self, error: GatewayError) -> bytes:
        return envelopes.chat_error_event(error)


class MessagesViaChat:
    """An Anthropic Messages client, an OpenAI-compatible upstream."""

    operation = Operation.CHAT

    def upstream_body(self, request: GatewayRequest, target: Target) -> bytes:
        try:
            body = messages_request_to_chat(
                _client_body(request),
                target.model,
                openai_platform=target.provider.capabilities.openai_platform,
            )
        except TranslationError as exc:
            raise InvalidRequest(str(exc)) from None
        return orjson.dumps(body)

    def client_reply(self, request: GatewayRequest, reply: UpstreamReply) -> tuple[bytes, Usage]:
        chat = upstream_answer(reply)
        message = chat_response_to_messages(chat, request.model)
        return orjson.dumps(message), usage_from_chat(chat.get("usage"))

    def stream_processor(
        self, request: GatewayRequest, input_tokens: int
    ) -> MessagesFromChatStream:
        return MessagesFromChatStream(
            ChatToMessagesStream(
                request.model, message_id=f"msg_{request.request_id}", input_tokens=input_tokens
            )
        )


class MessagesFromChatStream:
    def __init__(self, translator: ChatToMessagesStream) -> None:
        self._translator = translator
        self._done = False
        self._started = False

    def feed(self, event: SSEEvent) -> list[bytes]:
        if event.data == b"[DONE]":
            self._done = True
            return []
        self._started = True
        try:
            events = self._translator.feed(parse_event_data(event))
        except UpstreamStreamError as exc:
            raise stream_failure(exc) from None
        return [envelopes.sse_event(name, data) for name, data in events]

    def finish(self) -> list[bytes]:
        return [envelopes.sse_event(name, data) for name, data in self._translator.finish()]

    @property
    def complete(self) -> bool:
        return self._done

    @property
    def usage(self) -> Usage | None:
        return self._translator.usage if self._started else None

    @property
    def usage_final(self) -> bool:
        return self._translator.usage_final

    def terminal(self) -> bytes:
        return envelopes.MESSAGE_STOP

    def error_event(self, error: GatewayError) -> bytes:
        return envelopes.messages_error_event(error)


CHAT_VIA_MESSAGES = ChatViaMessages()
MESSAGES_VIA_CHAT = MessagesViaChat()
