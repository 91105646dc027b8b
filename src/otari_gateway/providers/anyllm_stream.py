"""any-llm's chat chunks as the OpenAI SSE stream the rest of the pipeline reads.

Providers differ in where usage arrives: some put it on the last content chunk, some on
every chunk (cumulative), some in a chunk of its own. The stream written here always looks
like OpenAI's with ``stream_options.include_usage``: content chunks without usage, then one
chunk with empty ``choices`` and the final usage, then ``[DONE]``. The chat relay drops that
usage chunk again for a client that did not ask for it.

Bedrock's SDK is synchronous and any-llm iterates its stream inside an async generator, so
each chunk read would block the event loop. ``threaded_chunks`` runs such a stream on a
worker thread with an event loop of its own and hands chunks over through a bounded queue;
``on_own_loop`` does the same for one call of an SDK whose async calls block (watsonx).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import orjson
from any_llm.types.completion import ChatCompletionChunk
from pydantic import BaseModel

_DONE = b"data: [DONE]\n\n"
_HANDOFF_CHUNKS = 32


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def openai_json(result: BaseModel) -> dict[str, Any]:
    """An any-llm result as OpenAI's JSON.

    any-llm gives reasoning as the ``reasoning`` string that OpenRouter and vLLM send; it is
    also put in ``reasoning_content``, the name most OpenAI-compatible servers use and the
    one Chat clients get from every other provider (Anthropic thinking included).
    """
    payload: dict[str, Any] = result.model_dump(mode="json", exclude_none=True)
    for choice in payload.get("choices") or ():
        for key in ("message", "delta"):
            part = choice.get(key)
            if isinstance(part, dict) and isinstance(part.get("reasoning"), str):
                part.setdefault("reasoning_content", part["reasoning"])
    return payload


async def openai_sse(
    first: ChatCompletionChunk | None,
    rest: AsyncIterator[ChatCompletionChunk],
    *,
    include_usage: bool,
    next_chunk: Callable[[AsyncIterator[ChatCompletionChunk]], Coroutine[Any, Any, Any]],
) -> AsyncIterator[bytes]:
    """SSE bytes for ``first`` and every later chunk; ``next_chunk`` maps errors and timeouts."""
    usage: dict[str, Any] | None = None
    head: dict[str, Any] = {}
    chunk = first
    while chunk is not None:
        payload = openai_json(chunk)
        if payload.get("usage"):
            usage = payload["usage"]
        payload.pop("usage", None)
        head = {key: payload[key] for key in ("id", "created", "model") if key in payload}
        if payload.get("choices"):
            yield sse(payload)
        chunk = await next_chunk(rest)
    if include_usage and usage is not None:
        yield sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    yield _DONE


async def replayed_sse(answer: dict[str, Any], *, include_usage: bool) -> AsyncIterator[bytes]:
    """A whole chat answer as the stream a client asked for, for a provider that cannot
    stream: per choice, one chunk whose delta is the whole message (tool calls indexed as
    streamed ones are) and one with its ``finish_reason``; usage in a chunk of its own."""
    head = {
        "id": answer.get("id"),
        "object": "chat.completion.chunk",
        "created": answer.get("created"),
        "model": answer.get("model"),
    }
    for choice in answer.get("choices") or ():
        message = dict(choice.get("message") or {})
        calls = message.pop("tool_calls", None)
        delta = {key: value for key, value in message.items() if value is not None}
        if calls:
            delta["tool_calls"] = [{"index": index, **call} for index, call in enumerate(calls)]
        index = choice.get("index", 0)
        yield sse({**head, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        reason = choice.get("finish_reason")
        yield sse({**head, "choices": [{"index": index, "delta": {}, "finish_reason": reason}]})
    if include_usage and answer.get("usage"):
        yield sse({**head, "choices": [], "usage": answer["usage"]})
    yield _DONE


async def on_own_loop(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``await make()`` on a worker thread with an event loop of its own, for an SDK whose
    async calls block. Cancelled, the caller returns at once; the thread finishes the call
    (its SDK's own timeouts bound it) and the result is dropped."""

    def run() -> Any:
        # Held by the thread, not the caller: an abandoned call still counts until it ends.
        with _OWN_LOOP_CALLS:
            return asyncio.run(make())

    return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)


# At most this many such calls run at once; more wait (on a thread) for one to end.
_OWN_LOOP_CALLS = threading.BoundedSemaphore(16)


async def threaded_chunks(
    open_stream: Callable[[], Coroutine[Any, Any, AsyncIterator[ChatCompletionChunk]]],
) -> AsyncIterator[ChatCompletionChunk]:
    """Run ``open_stream()`` and its iteration on a worker thread's own event loop.

    The thread stops at the next chunk after the consumer leaves (a blocked SDK read cannot
    be interrupted; the per-read timeout bounds it) and then closes the upstream connection.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[ChatCompletionChunk | BaseException | None] = asyncio.Queue(
        _HANDOFF_CHUNKS
    )
    stop = threading.Event()

    def hand_over(item: ChatCompletionChunk | BaseException | None) -> None:
        if not stop.is_set():
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    async def pump() -> None:
        try:
            chunks = await open_stream()
            async for chunk in chunks:
                if stop.is_set():
                    break
                hand_over(chunk)
        except Exception as exc:  # noqa: BLE001 -- re-raised on the consuming side
            hand_over(exc)
            return
        hand_over(None)

    def run() -> None:
        asyncio.run(pump())
        if stop.is_set():
            # An abandoned boto3 stream keeps its HTTP response in a reference cycle, so the
            # upstream connection (and Bedrock's generation) would run on until a collection.
            gc.collect()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # Unblock a worker waiting on a full queue so its thread can finish.
        while not queue.empty():
            queue.get_nowait()
