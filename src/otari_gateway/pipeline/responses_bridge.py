"""OpenAI Responses clients on upstreams without a Responses API of their own.

A Responses request becomes a Chat Completions one (``translate/responses_to_chat.py``);
for Anthropic it goes on through the existing Chat→Messages translator, and the answer
comes back the same way round, thinking included (``translate/responses_reasoning.py``).
Streams run the same chain event by event, and the final ``response.completed`` is built
after settlement from the usage that was billed.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

import orjson

from otari_gateway.errors import GatewayError, InvalidRequest
from otari_gateway.pipeline import envelopes
from otari_gateway.pipeline.exchange import forwarded_body, parse_event_data
from otari_gateway.pipeline.request import GatewayRequest
from otari_gateway.pipeline.routing import Target
from otari_gateway.pipeline.translated import DEFAULT_MAX_TOKENS, stream_failure, upstream_answer
from otari_gateway.providers.base import Operation, UpstreamReply
from otari_gateway.providers.sse import SSEEvent
from otari_gateway.translate.chat_stream import MessagesToChatStream
from otari_gateway.translate.chat_to_messages import (
    chat_request_to_messages,
    messages_response_to_chat,
)
from otari_gateway.translate.errors import TranslationError, UpstreamStreamError
from otari_gateway.translate.responses_stream import ChatToResponsesStream, Event
from otari_gateway.translate.responses_to_chat import (
    chat_response_to_responses,
    response_envelope,
    responses_request_to_chat,
    unsupported_stateful_field,
)
from otari_gateway.translate.structured_output import wants_json
from otari_gateway.translate.usage import usage_from_chat, usage_from_messages
from otari_gateway.usage import Usage


def _chat_request(
    request: GatewayRequest, target: Target, *, replay_thinking: bool = False
) -> dict[str, Any]:
    field = unsupported_stateful_field(request.body)
    if field is not None:
        raise InvalidRequest(
            f"'{field}' is not supported for model '{request.model}': its provider has no "
            "Responses API of its own and the gateway does not store responses; send the "
            "whole conversation in 'input' instead",
            param=field,
            code="unsupported_parameter",
        )
    try:
        return responses_request_to_chat(
            forwarded_body(request, target.model),
            target.model,
            replay_thinking=replay_thinking,
            openai_platform=target.provider.capabilities.openai_platform,
        )
    except TranslationError as exc:
        raise InvalidRequest(str(exc)) from None


def _wants_json(request: GatewayRequest) -> bool:
    text = request.body.get("text")
    return wants_json(text.get("format") if isinstance(text, dict) else None)


def _envelope(request: GatewayRequest) -> dict[str, Any]:
    return response_envelope(
        request.body,
        response_id=f"resp_{request.request_id}",
        model=request.model,
        created_at=int(time.time()),
    )


class ResponsesViaChat:
    """A Responses client, an OpenAI-compatible upstream that only has Chat Completions."""

    operation = Operation.CHAT

    def upstream_body(self, request: GatewayRequest, target: Target) -> bytes:
        return orjson.dumps(_chat_request(request, target))

    def client_reply(self, request: GatewayRequest, reply: UpstreamReply) -> tuple[bytes, Usage]:
        chat = upstream_answer(reply)
        usage = usage_from_chat(chat.get("usage"))
        response = chat_response_to_responses(
            chat, _envelope(request), usage, completed_at=int(time.time())
        )
        return orjson.dumps(response), usage

    def stream_processor(
        self, request: GatewayRequest, input_tokens: int
    ) -> ResponsesFromChatStream:
        return ResponsesFromChatStream(ChatToResponsesStream(_envelope(request)))


class ResponsesViaMessages:
    """A Responses client, an Anthropic upstream (Responses → Chat → Messages)."""

    operation = Operation.MESSAGES

    def upstream_body(self, request: GatewayRequest, target: Target) -> bytes:
        # Anthropic checks the signed thinking that input reasoning items carry back.
        chat = _chat_request(request, target, replay_thinking=True)
        try:
            body = chat_request_to_messages(
                chat, target.model, default_max_tokens=DEFAULT_MAX_TOKENS
            )
        except TranslationError as exc:
            raise InvalidRequest(str(exc)) from None
        return orjson.dumps(body)

    def client_reply(self, request: GatewayRequest, reply: UpstreamReply) -> tuple[bytes, Usage]:
        message = upstream_answer(reply)
        now = int(time.time())
        chat = messages_response_to_chat(
            message, request.model, created=now, json_answer=_wants_json(request)
        )
        # Anthropic's own usage keeps cache writes, which the Chat rendering folds away.
        usage = usage_from_messages(message.get("usage"))
        response = chat_response_to_responses(chat, _envelope(request), usage, completed_at=now)
        return orjson.dumps(response), usage

    def stream_processor(
        self, request: GatewayRequest, input_tokens: int
    ) -> ResponsesFromMessagesStream:
        chat = MessagesToChatStream(
            request.model,
            created=int(time.time()),
            include_usage=False,
            json_answer=_wants_json(request),
        )
        return ResponsesFromMessagesStream(chat, ChatToResponsesStream(_envelope(request)))


def _frames(events: list[Event]) -> list[bytes]:
    return [envelopes.sse_event(event["type"], event) for event in events]


class _ResponsesStream(ABC):
    """What both bridged streams share: framing, completion and the terminal event."""

    def __init__(self, responses: ChatToResponsesStream) -> None:
        self._responses = responses
        self._done = False
        self._started = False

    def feed(self, event: SSEEvent) -> list[bytes]:
        try:
            return _frames(self._feed(event))
        except UpstreamStreamError as exc:
            raise stream_failure(exc) from None

    @abstractmethod
    def _feed(self, event: SSEEvent) -> list[Event]: ...

    @property
    @abstractmethod
    def usage(self) -> Usage | None: ...

    @property
    @abstractmethod
    def usage_final(self) -> bool: ...

    def finish(self) -> list[bytes]:
        return _frames(self._responses.finish())

    @property
    def complete(self) -> bool:
        return self._done

    def terminal(self) -> bytes:
        event = self._responses.terminal(self.usage or Usage(), completed_at=int(time.time()))
        return envelopes.sse_event(event["type"], event)

    def error_event(self, error: GatewayError) -> bytes:
        code = error.code or error.openai_type
        return b"".join(_frames(self._responses.error(code, error.message, error.param)))


class ResponsesFromChatStream(_ResponsesStream):
    def _feed(self, event: SSEEvent) -> list[Event]:
        if event.data == b"[DONE]":
            self._done = True
            return []
        self._started = True
        return self._responses.feed(parse_event_data(event))

    @property
    def usage(self) -> Usage | None:
        return self._responses.usage if self._started else None

    @property
    def usage_final(self) -> bool:
        return self._responses.usage_final


class ResponsesFromMessagesStream(_ResponsesStream):
    def __init__(self, chat: MessagesToChatStream, responses: ChatToResponsesStream) -> None:
        super().__init__(responses)
        self._chat = chat

    def _feed(self, event: SSEEvent) -> list[Event]:
        data = parse_event_data(event)
        kind = data.get("type") or event.event
        if kind == "message_stop":
            self._done = True
            return []
        if kind == "message_start":
            self._started = True
        chunks = self._chat.feed(data)
        # Opened here rather than by the first chunk, which may come events later: the
        # response names the model message_start named.
        events = self._responses.start(model=self._chat.model)
        for chunk in chunks:
            events.extend(self._responses.feed(chunk))
        return events

    @property
    def usage(self) -> Usage | None:
        return self._chat.usage if self._started else None

    @property
    def usage_final(self) -> bool:
        return self._chat.usage_final


RESPONSES_VIA_CHAT = ResponsesViaChat()
RESPONSES_VIA_MESSAGES = ResponsesViaMessages()
