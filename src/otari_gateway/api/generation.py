"""Generation routes: parse, authenticate, hand a ``GatewayRequest`` to the pipeline.

These are plain Starlette routes reading the raw body (no pydantic model per request);
their schemas are declared for OpenAPI in ``openapi.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from otari_gateway.api.body import read_body, read_json_object, wanted_headers
from otari_gateway.api.errors import (
    Envelope,
    error_response,
    request_id_headers,
    unexpected_error,
)
from otari_gateway.api.services import Services
from otari_gateway.api.sse import SSEResponse
from otari_gateway.errors import GatewayError
from otari_gateway.pipeline import validate
from otari_gateway.pipeline.form import form_content_type, parse_form
from otari_gateway.pipeline.ids import new_request_id
from otari_gateway.pipeline.request import Caller, GatewayRequest, Surface
from otari_gateway.pipeline.run import JSONResult
from otari_gateway.pipeline.tokens import count_input_tokens

log = structlog.get_logger(__name__)

Handler = Callable[[Request, str], Awaitable[Response]]

# Anthropic's beta flags change request semantics upstream, so they travel with the request.
_FORWARDED_ANTHROPIC_HEADERS = ("anthropic-beta",)


def _guarded(envelope: Envelope, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Every failure becomes an error in the surface's own envelope."""

    async def endpoint(request: Request) -> Response:
        request_id = new_request_id()
        try:
            return await handler(request, request_id)
        except GatewayError as exc:
            return error_response(exc, envelope, request_id, path=request.url.path)
        except Exception as exc:  # noqa: BLE001 -- the surface's edge: logged, answered
            error = unexpected_error(exc, request.url.path, request_id)
            return error_response(error, envelope, request_id, path=request.url.path)

    return endpoint


def generation_routes(services: Services) -> list[BaseRoute]:
    limit = services.config.max_request_body_bytes

    async def prepare(request: Request) -> tuple[Caller, dict[str, Any]]:
        headers = wanted_headers(request.scope)
        caller = await services.runtime.authenticator.authenticate(headers)
        body = await read_json_object(request.receive, limit, headers.get("content-length"))
        return caller, body

    async def run(request: GatewayRequest) -> Response:
        result = await services.runtime.pipeline.run(request)
        envelope = Envelope.ANTHROPIC if request.surface is Surface.MESSAGES else Envelope.OPENAI
        headers = request_id_headers(request.request_id, envelope)
        headers.update(result.headers)
        if isinstance(result, JSONResult):
            return Response(
                result.body,
                status_code=result.status,
                media_type=result.media_type,
                headers=headers,
            )
        return SSEResponse(result.events, headers)

    async def chat(request: Request, request_id: str) -> Response:
        caller, body = await prepare(request)
        model, stream = validate.check_chat(body)
        return await run(GatewayRequest(Surface.CHAT, request_id, caller, model, stream, body))

    async def messages(request: Request, request_id: str) -> Response:
        caller, body = await prepare(request)
        model, stream = validate.check_messages(body)
        forwarded = {
            name: value
            for name in _FORWARDED_ANTHROPIC_HEADERS
            if (value := request.headers.get(name))
        }
        return await run(
            GatewayRequest(Surface.MESSAGES, request_id, caller, model, stream, body, forwarded)
        )

    async def count_tokens(request: Request, request_id: str) -> Response:
        _, body = await prepare(request)
        model = validate.check_count_tokens(body)
        target = services.runtime.router.resolve(model)
        counter = services.runtime.tokenizers.counter(target.model)
        payload = orjson.dumps({"input_tokens": await count_input_tokens(body, counter)})
        return Response(
            payload,
            media_type="application/json",
            headers=request_id_headers(request_id, Envelope.ANTHROPIC),
        )

    async def responses(request: Request, request_id: str) -> Response:
        caller, body = await prepare(request)
        model, stream = validate.check_responses(body)
        return await run(GatewayRequest(Surface.RESPONSES, request_id, caller, model, stream, body))

    def json_surface(surface: Surface, check: Callable[[Mapping[str, Any]], str]) -> Handler:
        """A non-streamed JSON surface: its own field checks, then the pipeline."""

        async def handler(request: Request, request_id: str) -> Response:
            caller, body = await prepare(request)
            model = check(body)
            return await run(GatewayRequest(surface, request_id, caller, model, False, body))

        return handler

    async def transcriptions(request: Request, request_id: str) -> Response:
        headers = wanted_headers(request.scope)
        caller = await services.runtime.authenticator.authenticate(headers)
        raw = await read_body(request.receive, limit, headers.get("content-length"))
        form = parse_form(raw, headers.get("content-type"))
        model = validate.check_transcription(form)
        # The form is re-encoded for the upstream under a boundary of its own.
        upstream = {"Content-Type": form_content_type(request_id)}
        return await run(
            GatewayRequest(Surface.TRANSCRIPTIONS, request_id, caller, model, False, form, upstream)
        )

    openai, anthropic = Envelope.OPENAI, Envelope.ANTHROPIC
    return [
        Route("/v1/chat/completions", _guarded(openai, chat), methods=["POST"]),
        Route("/v1/messages", _guarded(anthropic, messages), methods=["POST"]),
        Route("/v1/messages/count_tokens", _guarded(anthropic, count_tokens), methods=["POST"]),
        Route("/v1/responses", _guarded(openai, responses), methods=["POST"]),
        *(
            Route(path, _guarded(openai, json_surface(surface, check)), methods=["POST"])
            for path, surface, check in (
                ("/v1/embeddings", Surface.EMBEDDINGS, validate.check_embeddings),
                ("/v1/moderations", Surface.MODERATIONS, validate.check_moderations),
                ("/v1/rerank", Surface.RERANK, validate.check_rerank),
                ("/v1/images/generations", Surface.IMAGES, validate.check_images),
                ("/v1/audio/speech", Surface.SPEECH, validate.check_speech),
            )
        ),
        Route("/v1/audio/transcriptions", _guarded(openai, transcriptions), methods=["POST"]),
    ]
