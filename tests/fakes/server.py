"""Threaded aiohttp server base for the fake LLM upstreams.

``FakeUpstream`` runs an ``aiohttp.web`` application on 127.0.0.1 (free port) in a
background thread with its own event loop, so it works the same whether the client
is a synchronous SDK in the test thread or the gateway in a subprocess. It records
every request, and injects faults (errors, delays, dropped streams) in FIFO order.
Provider subclasses supply the routes, the auth check and the error envelope, and
return plain ``JsonReply`` / ``SseReply`` / ``RawReply`` values; this module does the HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

import orjson
from aiohttp import web

_STOP_TIMEOUT = 10.0
_SHUTDOWN_TIMEOUT = 1.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (recorded before faults and auth)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lowercase names
    body: bytes
    json: Any | None  # parsed body, None when empty or not valid JSON
    # A multipart/form-data body parsed by aiohttp: text fields as str, uploads as
    # ``FormUpload``, a repeated name as a list; None for any other body.
    form: dict[str, Any] | None = None
    # The query string as sent, where a repeated name keeps every value.
    raw_query: str = ""

    def json_object(self) -> dict[str, Any]:
        """The parsed body when it is a JSON object, else ``{}``."""
        return self.json if isinstance(self.json, dict) else {}


@dataclass(frozen=True)
class JsonReply:
    """A JSON answer; ``body`` is serialised with orjson."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SseReply:
    """A ``text/event-stream`` answer; each frame is one complete SSE event.

    Other streamed formats (NDJSON, AWS event-stream) set their own ``content_type``; a
    frame is then one line or one binary message.
    """

    frames: Sequence[bytes]
    content_type: str = "text/event-stream; charset=utf-8"


@dataclass(frozen=True)
class RawReply:
    """A non-JSON answer (audio, plain text) sent as ``body`` with ``content_type``."""

    body: bytes
    content_type: str
    status: int = 200


@dataclass(frozen=True)
class FormUpload:
    """One uploaded file of a multipart request."""

    filename: str
    content_type: str
    data: bytes


Reply: TypeAlias = JsonReply | SseReply | RawReply
Handler: TypeAlias = Callable[[RecordedRequest], Reply]


@dataclass
class _Fault:
    kind: Literal["fail", "delay", "drop"]
    remaining: int
    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    seconds: float = 0.0
    after_events: int = 0


def sse_frame(data: Any, event: str | None = None) -> bytes:
    """Render one SSE event: optional ``event:`` line, one ``data:`` line, blank line."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = f"event: {event}\n".encode() if event is not None else b""
    return head + b"data: " + payload + b"\n\n"


class FakeUpstream:
    """Base class: threaded server, request recording and fault injection."""

    request_id_header = "x-request-id"

    def __init__(self, api_key: str, *, stream_interval: float = 0.0) -> None:
        self.api_key = api_key
        self.stream_interval = stream_interval
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: deque[_Fault] = deque()
        self._counters: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._sock: socket.socket | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._port = 0

    # ----------------------------------------------------------------- subclass API
    def routes(self) -> Mapping[tuple[str, str], Handler]:
        """``{(METHOD, path): handler}``; handlers run on the server thread."""
        raise NotImplementedError

    def handler_for(self, method: str, path: str) -> Handler | None:
        """The handler of a request; subclasses with ids in their paths extend it."""
        return self.routes().get((method, path))

    def takes_json(self, method: str, path: str) -> bool:
        """Whether the request's body must be a JSON object (POSTs but forms, by default)."""
        return method == "POST" and path not in self.form_paths

    def error_reply(self, status: int, message: str | None = None) -> JsonReply:
        """The provider's own error envelope for ``status``."""
        raise NotImplementedError

    def auth_error(self, request: RecordedRequest) -> JsonReply | None:
        """An error reply when the credentials are wrong, else None."""
        raise NotImplementedError

    def default_fault_headers(self, status: int) -> dict[str, str]:
        """Headers a real provider sends with this error status."""
        return {}

    malformed_json_message = "The request body is not valid JSON."
    # POST paths whose bodies are multipart/form-data rather than JSON.
    form_paths: frozenset[str] = frozenset()

    # ----------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash, no ``/v1``)."""
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        """Bind a free port and serve in a background thread; returns when ready."""
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self._port = sock.getsockname()[1]
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._run, name=f"{type(self).__name__}-server", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_STOP_TIMEOUT):
            self.stop()
            raise RuntimeError(f"{type(self).__name__} did not start in time")
        if self._startup_error is not None:
            error = self._startup_error
            self.stop()
            raise RuntimeError(f"{type(self).__name__} failed to start") from error

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed by a failed start
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{type(self).__name__} thread did not stop")
        if self._sock is not None:
            self._sock.close()
        self._thread = self._loop = self._stop_event = self._sock = None
        self._port = 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # surfaced to start()
            self._startup_error = error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            assert self._sock is not None
            await web.SockSite(runner, self._sock).start()
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await runner.cleanup()

    # ----------------------------------------------------------------- recording
    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (AssertionError when there is none)."""
        with self._lock:
            assert self._requests, f"{type(self).__name__} received no request"
            return self._requests[-1]

    def clear(self) -> None:
        """Forget recorded requests (faults stay queued)."""
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Forget recorded requests and queued faults; restart id counters at 1."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._counters.clear()

    def next_id(self, kind: str = "object") -> int:
        """Per-instance counter for ``kind`` (1, 2, ...); ``"call"`` numbers tool calls."""
        with self._lock:
            self._counters[kind] = self._counters.get(kind, 0) + 1
            return self._counters[kind]

    # ----------------------------------------------------------------- faults
    def fail_next(
        self,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and an error body.

        ``body`` defaults to the provider's envelope; ``headers=None`` adds the
        provider's usual headers for that status (e.g. ``retry-after`` on an
        Anthropic 429), ``headers={}`` sends none.
        """
        self._queue(_Fault("fail", times, status=status, body=body, headers=headers))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Sleep ``seconds`` before answering the next ``times`` requests normally."""
        self._queue(_Fault("delay", times, seconds=seconds))

    def drop_stream_next(self, after_events: int, *, times: int = 1) -> None:
        """Send ``after_events`` SSE events, then abort the TCP connection.

        The terminal event is never sent (the count is capped below it). A
        non-streaming request that consumes this fault gets no response at all.
        """
        self._queue(_Fault("drop", times, after_events=after_events))

    def _queue(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            head = self._faults[0]
            head.remaining -= 1
            if head.remaining == 0:
                self._faults.popleft()
            return head

    # ----------------------------------------------------------------- HTTP
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed: Any | None = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
            json=parsed,
            form=self._read_form(request.headers.get("Content-Type", ""), body),
            raw_query=request.query_string,
        )
        with self._lock:
            self._requests.append(recorded)

        fault = self._take_fault()
        drop_after: int | None = None
        if fault is not None and fault.kind == "delay":
            await self._sleep(fault.seconds)
        elif fault is not None and fault.kind == "drop":
            drop_after = fault.after_events
        elif fault is not None:
            return self._render_json(self._fault_reply(fault))

        reply = self._handle(recorded)
        if isinstance(reply, SseReply):
            return await self._render_sse(request, reply, drop_after)
        if drop_after is not None:
            await self._abort(request)
            return web.StreamResponse()
        if isinstance(reply, RawReply):
            headers = {
                self.request_id_header: self._request_id(),
                "Content-Type": reply.content_type,
            }
            return web.Response(body=reply.body, status=reply.status, headers=headers)
        return self._render_json(reply)

    @staticmethod
    def _read_form(content_type: str, body: bytes) -> dict[str, Any] | None:
        """Parse a multipart body with the standard library's MIME parser."""
        if not content_type.lower().startswith("multipart/form-data"):
            return None
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        form: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            item: Any = (
                FormUpload(part.get_filename() or "", part.get_content_type(), payload)
                if part.get_filename() is not None
                else payload.decode()
            )
            if name in form:
                previous = form[name]
                form[name] = [*previous, item] if isinstance(previous, list) else [previous, item]
            else:
                form[name] = item
        return form

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the server is stopping."""
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    def _handle(self, recorded: RecordedRequest) -> Reply:
        auth = self.auth_error(recorded)
        if auth is not None:
            return auth
        handler = self.handler_for(recorded.method, recorded.path)
        if handler is None:
            return self.error_reply(404, f"Invalid URL ({recorded.method} {recorded.path})")
        if recorded.path in self.form_paths and recorded.form is None:
            return self.error_reply(400, "This endpoint takes a multipart/form-data body.")
        if self.takes_json(recorded.method, recorded.path) and not isinstance(recorded.json, dict):
            return self.error_reply(400, self.malformed_json_message)
        return handler(recorded)

    def _fault_reply(self, fault: _Fault) -> JsonReply:
        envelope = self.error_reply(fault.status)
        headers = self.default_fault_headers(fault.status)
        if fault.headers is not None:
            headers = dict(fault.headers)
        body = fault.body if fault.body is not None else envelope.body
        return JsonReply(body, status=fault.status, headers=headers)

    def _request_id(self) -> str:
        return f"req_fake_{time.monotonic_ns():x}"

    def _render_json(self, reply: JsonReply) -> web.Response:
        headers = {self.request_id_header: self._request_id(), **reply.headers}
        return web.Response(
            body=orjson.dumps(reply.body),
            status=reply.status,
            headers=headers,
            content_type="application/json",
        )

    async def _render_sse(
        self, request: web.Request, reply: SseReply, drop_after: int | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": reply.content_type,
                "Cache-Control": "no-cache",
                self.request_id_header: self._request_id(),
            },
        )
        frames = list(reply.frames)
        limit = len(frames)
        if drop_after is not None:
            limit = max(0, min(drop_after, len(frames) - 1))
        try:
            await response.prepare(request)
            for frame in frames[:limit]:
                await response.write(frame)
                if self.stream_interval:
                    await asyncio.sleep(self.stream_interval)
            if drop_after is not None:
                await self._abort(request)
                return response
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream
            pass
        return response

    @staticmethod
    async def _abort(request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            return
        for _ in range(200):  # up to ~1s for already-written events to reach the client
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.005)
        transport.abort()
