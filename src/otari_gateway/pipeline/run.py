"""The one core call every generation surface funnels into: ``Pipeline.run``.

route → pick the exchange for (surface, upstream wire) → build the upstream body →
call the upstream → answer (JSON, or an SSE relay) → settle exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import anyio
import structlog

from otari_gateway.errors import GatewayError, InternalError, InvalidRequest, UpstreamError
from otari_gateway.pipeline import auxiliary, passthrough, responses_bridge, translated
from otari_gateway.pipeline.admission import Admission, Admitted
from otari_gateway.pipeline.exchange import Exchange, StreamProcessor
from otari_gateway.pipeline.request import GatewayRequest, Surface
from otari_gateway.pipeline.routing import Router, Target
from otari_gateway.pipeline.settle import CLIENT_CLOSED, Outcome, Settler
from otari_gateway.pipeline.stored_responses import StoredResponses, response_id_of
from otari_gateway.providers.base import RAW_REPLY_OPERATIONS, Capabilities, Operation, Wire
from otari_gateway.providers.sse import SSESplitter

log = structlog.get_logger(__name__)

_EXCHANGES: Mapping[tuple[Surface, Wire], Exchange] = {
    (Surface.CHAT, Wire.OPENAI): passthrough.CHAT,
    (Surface.MESSAGES, Wire.ANTHROPIC): passthrough.MESSAGES,
    (Surface.RESPONSES, Wire.OPENAI): passthrough.RESPONSES,
    (Surface.EMBEDDINGS, Wire.OPENAI): passthrough.EMBEDDINGS,
    (Surface.CHAT, Wire.ANTHROPIC): translated.CHAT_VIA_MESSAGES,
    (Surface.MESSAGES, Wire.OPENAI): translated.MESSAGES_VIA_CHAT,
    (Surface.MODERATIONS, Wire.OPENAI): auxiliary.MODERATIONS,
    (Surface.RERANK, Wire.OPENAI): auxiliary.RERANK,
    (Surface.IMAGES, Wire.OPENAI): auxiliary.IMAGES,
    (Surface.SPEECH, Wire.OPENAI): auxiliary.SPEECH,
    (Surface.TRANSCRIPTIONS, Wire.OPENAI): auxiliary.TRANSCRIPTIONS,
}

# Tried when the upstream lacks the operation the exchange above needs.
_BRIDGES: Mapping[tuple[Surface, Wire], Exchange] = {
    (Surface.RESPONSES, Wire.OPENAI): responses_bridge.RESPONSES_VIA_CHAT,
    (Surface.RESPONSES, Wire.ANTHROPIC): responses_bridge.RESPONSES_VIA_MESSAGES,
}

JSON_MEDIA_TYPE = "application/json"
_CANCELLED = "cancelled before the upstream answered (gateway shutdown)"


@dataclass(frozen=True, slots=True)
class JSONResult:
    body: bytes
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    media_type: str = JSON_MEDIA_TYPE


@dataclass(frozen=True, slots=True)
class StreamResult:
    events: AsyncGenerator[bytes, None]
    headers: Mapping[str, str] = field(default_factory=dict)


def _exchange_for(surface: Surface, capabilities: Capabilities) -> Exchange | None:
    """The same-format exchange, or the bridge when the upstream lacks that operation."""
    key = (surface, capabilities.wire)
    for exchange in (_EXCHANGES.get(key), _BRIDGES.get(key)):
        if exchange is not None and exchange.operation in capabilities.operations:
            return exchange
    return None


def served_by(surface: Surface, capabilities: Capabilities) -> Operation | None:
    """The upstream operation that serves ``surface`` on such a provider (None: not served)."""
    exchange = _exchange_for(surface, capabilities)
    return exchange.operation if exchange is not None else None


def select_exchange(surface: Surface, target: Target) -> Exchange:
    exchange = _exchange_for(surface, target.provider.capabilities)
    if exchange is None:
        raise InvalidRequest(
            f"provider '{target.instance}' does not support the {surface.value} endpoint",
            param="model",
            code="unsupported_endpoint",
        )
    return exchange


class Pipeline:
    def __init__(
        self, router: Router, admission: Admission, settler: Settler, stored: StoredResponses
    ) -> None:
        self._router = router
        self._admission = admission
        self._settler = settler
        self._stored = stored
        self._settling: set[asyncio.Task[None]] = set()

    async def run(self, request: GatewayRequest) -> JSONResult | StreamResult:
        target: Target | None = None
        admitted: Admitted | None = None
        user_id: str | None = None
        try:
            user_id = self._admission.billed_user(request)
            target = self._router.resolve(request.model)
            exchange = select_exchange(request.surface, target)
            body = exchange.upstream_body(request, target)
            stores = exchange is passthrough.RESPONSES
            if stores:
                await self._stored.check_state(request.body, target, user_id)
            admitted = await self._admission.admit(request, target, user_id)
            if request.stream:
                return await self._open_stream(request, target, admitted, exchange, body, user_id)
            reply = await target.provider.send(
                exchange.operation, body, dict(request.forward_headers) or None, model=target.model
            )
            content, usage = exchange.client_reply(request, reply)
            if stores:
                await self._stored.remember(response_id_of(content), request.body, target, user_id)
        except GatewayError as exc:
            await self._settle(
                Outcome(request, target, admitted, None, exc.status, exc.message, user_id)
            )
            raise
        except Exception:
            await self._settle(
                Outcome(request, target, admitted, None, 500, "internal error", user_id)
            )
            raise
        except asyncio.CancelledError:
            # Cancelled from outside: a shutdown whose grace period ran out. The hold is
            # released and the request recorded all the same, by a task shutdown waits for.
            await self._settle_shielded(
                Outcome(request, target, admitted, None, CLIENT_CLOSED, _CANCELLED, user_id)
            )
            raise
        # Not through a task of its own: that costs a loop turn on every request, and
        # settling yields only for Redis or a full writer queue, so a shutdown's
        # cancellation has all but no moment to land in it.
        await self._settle(Outcome(request, target, admitted, usage, 200))
        media_type = (
            reply.content_type if exchange.operation in RAW_REPLY_OPERATIONS else JSON_MEDIA_TYPE
        )
        return JSONResult(content, headers=admitted.limit_headers, media_type=media_type)

    async def _settle_shielded(self, outcome: Outcome) -> None:
        """Settle in a task of its own that the caller's cancellation cannot interrupt.

        A stream's client can leave at any await, including inside settlement (a Redis or
        queue wait); the usage record and the hold's release must happen all the same.
        """
        task = asyncio.get_running_loop().create_task(self._settle(outcome))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)

    async def drain(self) -> None:
        """Wait for settlements still running (graceful shutdown, before the writer closes)."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def _settle(self, outcome: Outcome) -> None:
        try:
            await self._settler.settle(outcome)
        except Exception:
            # A settlement failure must not turn a delivered answer into an error; it is
            # logged loudly for the operator instead.
            log.exception("settlement.failed", request_id=outcome.request.request_id)

    async def _open_stream(
        self,
        request: GatewayRequest,
        target: Target,
        admitted: Admitted,
        exchange: Exchange,
        body: bytes,
        user_id: str,
    ) -> StreamResult:
        processor = exchange.stream_processor(request, admitted.input_tokens)
        before_output: Callable[[], Awaitable[None]] | None = None
        if isinstance(processor, passthrough.ResponsesStream):
            responses = processor

            async def before_output() -> None:
                # The id arrives in the first event: recorded before the client can use it.
                await self._stored.remember(responses.response_id, request.body, target, user_id)

        stack = AsyncExitStack()
        # Entered before the response starts, so a refusal keeps its real status code.
        chunks = await stack.enter_async_context(
            target.provider.stream(
                exchange.operation,
                body,
                dict(request.forward_headers) or None,
                model=target.model,
            )
        )
        return StreamResult(
            self._relay(request, target, admitted, processor, chunks, stack, before_output),
            headers=admitted.limit_headers,
        )

    async def _relay(
        self,
        request: GatewayRequest,
        target: Target,
        admitted: Admitted,
        processor: StreamProcessor,
        chunks: AsyncIterator[bytes],
        stack: AsyncExitStack,
        before_output: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        splitter = SSESplitter()
        settled = False
        delivered = 0
        try:
            try:
                async for chunk in chunks:
                    out: list[bytes] = []
                    for event in splitter.feed(chunk):
                        if produced := processor.feed(event):
                            out.extend(produced)
                            delivered += 1
                    if out:
                        if before_output is not None:
                            await before_output()
                            before_output = None
                        yield b"".join(out)
                tail = [b for event in splitter.flush() for b in processor.feed(event)]
                if not processor.complete:
                    raise UpstreamError(
                        f"provider '{target.instance}' ended the stream before it was complete"
                    )
                tail.extend(processor.finish())
                if tail:
                    yield b"".join(tail)
            except Exception as exc:  # noqa: BLE001 -- the stream edge: every failure becomes an error event
                error = _as_gateway_error(exc, request)
                settled = True
                await self._settle_shielded(
                    Outcome(
                        request,
                        target,
                        admitted,
                        processor.usage,
                        error.status,
                        error.message,
                        delivered_events=delivered,
                        usage_final=processor.usage_final,
                    )
                )
                yield processor.error_event(error)
                return
            settled = True
            await self._settle_shielded(Outcome(request, target, admitted, processor.usage, 200))
            yield processor.terminal()
        finally:
            with anyio.CancelScope(shield=True):
                if not settled:
                    await self._settle_shielded(
                        Outcome(
                            request,
                            target,
                            admitted,
                            processor.usage,
                            CLIENT_CLOSED,
                            "client disconnected",
                            delivered_events=delivered,
                            usage_final=processor.usage_final,
                        )
                    )
                await stack.aclose()


def _as_gateway_error(exc: Exception, request: GatewayRequest) -> GatewayError:
    """Stream failures become an error event; a bug is logged with its trace, not shown."""
    if isinstance(exc, GatewayError):
        log.log(exc.log_level, "stream.failed", request_id=request.request_id, error=exc.message)
        return exc
    log.exception("stream.crashed", request_id=request.request_id)
    return InternalError("the gateway failed while relaying the stream")
