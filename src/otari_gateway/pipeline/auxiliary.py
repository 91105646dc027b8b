"""Exchanges of the OpenAI surfaces beyond text generation, relayed to OpenAI-wire upstreams.

Moderations, rerank, image generation, speech and transcription: the upstream's answer
reaches the client byte for byte (audio and text with their own Content-Type); the
exchange only reads what is billed. Moderations are billed per request, speech
per request and per character of its ``input``, rerank per input token the provider
reports (plus per request), images per image (plus any tokens reported), transcriptions
per second of audio: the duration the upstream states, or for a WAV upload that states
none, the duration in its header (plus any tokens reported).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import orjson

from otari_gateway.pipeline.audio import wav_seconds
from otari_gateway.pipeline.exchange import StreamProcessor, forwarded_body, parse_reply
from otari_gateway.pipeline.form import FormFile, encode_form
from otari_gateway.pipeline.request import GatewayRequest, Surface
from otari_gateway.pipeline.routing import Target
from otari_gateway.providers.base import Operation, UpstreamReply
from otari_gateway.translate.usage import (
    usage_from_images,
    usage_from_rerank,
    usage_from_transcription,
)
from otari_gateway.usage import Usage

ZERO = Decimal(0)
_JSON = "application/json"


def _without_user(request: GatewayRequest, model: str) -> bytes:
    """The body minus ``user``: these OpenAI endpoints have no such field (OpenAI refuses
    unknown ones), and the gateway reads it only to bill a master-key request."""
    body = forwarded_body(request, model)
    body.pop("user", None)
    return orjson.dumps(body)


def _with_user(request: GatewayRequest, model: str) -> bytes:
    return orjson.dumps(forwarded_body(request, model))


class _Relay:
    """Non-streaming relay; ``read_usage`` turns the upstream's answer into what is billed."""

    def __init__(
        self,
        operation: Operation,
        build: Callable[[GatewayRequest, str], bytes],
        read_usage: Callable[[GatewayRequest, UpstreamReply], Usage],
    ) -> None:
        self.operation = operation
        self._build = build
        self._read_usage = read_usage

    def upstream_body(self, request: GatewayRequest, target: Target) -> bytes:
        return self._build(request, target.model)

    def client_reply(self, request: GatewayRequest, reply: UpstreamReply) -> tuple[bytes, Usage]:
        return reply.body, self._read_usage(request, reply)

    def stream_processor(self, request: GatewayRequest, input_tokens: int) -> StreamProcessor:
        raise AssertionError(f"{self.operation.value} answers are never streamed")


def _moderation_usage(request: GatewayRequest, reply: UpstreamReply) -> Usage:
    parse_reply(reply)
    return Usage()


def _rerank_usage(request: GatewayRequest, reply: UpstreamReply) -> Usage:
    usage = parse_reply(reply).get("usage")
    return usage_from_rerank(usage if isinstance(usage, Mapping) else None)


def _images_usage(request: GatewayRequest, reply: UpstreamReply) -> Usage:
    return usage_from_images(parse_reply(reply))


def _spoken(request: GatewayRequest) -> Usage:
    text = request.body.get("input")
    return Usage(characters=len(text) if isinstance(text, str) else 0)


def _speech_usage(request: GatewayRequest, reply: UpstreamReply) -> Usage:
    return _spoken(request)


def _transcription_body(request: GatewayRequest, model: str) -> bytes:
    fields = {name: value for name, value in request.body.items() if name != "user"}
    fields["model"] = model
    return encode_form(fields, request.request_id)


def uploaded_seconds(request: GatewayRequest) -> Decimal | None:
    """Seconds of the uploaded audio, when it is a WAV file."""
    upload = request.body.get("file")
    return wav_seconds(upload.data) if isinstance(upload, FormFile) else None


def _transcription_usage(request: GatewayRequest, reply: UpstreamReply) -> Usage:
    # Plain text, SRT and VTT answers state no duration; verbose_json and json do.
    usage = usage_from_transcription(parse_reply(reply)) if reply.content_type == _JSON else Usage()
    if usage.audio_seconds == ZERO:
        seconds = uploaded_seconds(request)
        if seconds is not None:
            return replace(usage, audio_seconds=seconds)
    return usage


def _requested_images(request: GatewayRequest) -> int:
    """How many images an image request asks for (``n``, default 1)."""
    n: Any = request.body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def expected_units(request: GatewayRequest) -> Usage:
    """The images, seconds of audio and characters a request is known to ask for, for
    its budget hold.

    A compressed audio upload's length is unknown until the upstream answers, so its
    hold covers only the per-request price; the duration is charged at settlement.
    """
    if request.surface is Surface.IMAGES:
        return Usage(images=_requested_images(request))
    if request.surface is Surface.TRANSCRIPTIONS:
        return Usage(audio_seconds=uploaded_seconds(request) or ZERO)
    if request.surface is Surface.SPEECH:
        return _spoken(request)
    return Usage()


MODERATIONS = _Relay(Operation.MODERATIONS, _without_user, _moderation_usage)
RERANK = _Relay(Operation.RERANK, _without_user, _rerank_usage)
IMAGES = _Relay(Operation.IMAGES, _with_user, _images_usage)
SPEECH = _Relay(Operation.SPEECH, _without_user, _speech_usage)
TRANSCRIPTIONS = _Relay(Operation.TRANSCRIPTIONS, _transcription_body, _transcription_usage)
