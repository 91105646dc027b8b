"""Pooled HTTP transport to one upstream, and the mapping of its failures.

One ``aiohttp.ClientSession`` per provider instance, opened at start-up and reused by every
request (building a client per request was the reference gateway's main cost). Every call
has a connect timeout and a total (or, for streams, per-read) timeout. Upstream failures are
mapped once, here, to the gateway's error tree, and credentials are scrubbed from any
upstream message before it can reach a client.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from otari_gateway import __version__
from otari_gateway.config import ProviderConfig
from otari_gateway.errors import (
    GatewayError,
    RequestTooLarge,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from otari_gateway.providers.base import Operation, UpstreamReply

_MAX_ERROR_BODY = 64 * 1024
_MAX_MESSAGE_CHARS = 1000
_SECRET_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,}|AIza[0-9A-Za-z_\-]{20,})"
)

ErrorMessageReader = Callable[[Any], tuple[str | None, str | None, str | None]]
"""Reads (message, param, code) out of a parsed upstream error body."""


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Remove configured credentials and anything shaped like a key from upstream text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _SECRET_PATTERNS.sub("[redacted]", text)


class HttpUpstream:
    """POSTs JSON to one upstream base URL with that instance's credentials."""

    def __init__(
        self,
        instance: str,
        config: ProviderConfig,
        *,
        base_url: str,
        auth_headers: Mapping[str, str],
        secret: str | None,
        paths: Mapping[Operation, str],
        read_error: ErrorMessageReader,
    ) -> None:
        self.instance = instance
        self._base_url = base_url.rstrip("/")
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"otari-gateway/{__version__}",
            **auth_headers,
        }
        self._urls = {op: self._base_url + path for op, path in paths.items()}
        self._read_error = read_error
        self._secrets = (secret,) if secret else ()
        self._limit = config.max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout, sock_connect=config.connect_timeout
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout, sock_read=config.timeout
        )
        self._seconds = config.timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            # No cookie jar: upstream APIs are stateless, and the default jar filters and
            # stores cookies on every request.
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, operation: Operation) -> str:
        return self._urls[operation]

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise UpstreamError(f"provider '{self.instance}' is not started")
        return self._session

    async def send(
        self, operation: Operation, body: bytes, headers: dict[str, str] | None = None
    ) -> UpstreamReply:
        return await self._call("POST", self._url(operation), data=body, headers=headers)

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET ``path`` under the base URL and parse it (callers bound the wait)."""
        reply = await self._call("GET", self._base_url + path, params=params)
        try:
            return orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"provider '{self.instance}' returned a body that is not JSON"
            ) from None

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> UpstreamReply:
        """Any method on ``path`` under the base URL; the answer whatever its Content-Type."""
        return await self._call(
            method, self._base_url + path, data=body, headers=headers, params=params
        )

    async def _call(self, method: str, url: str, **options: Any) -> UpstreamReply:
        session = self._open()
        try:
            async with session.request(method, url, **options) as resp:
                if resp.status >= 400:
                    raise await self._failure(resp)
                payload = await resp.read()
                return UpstreamReply(resp.status, payload, resp.content_type)
        except GatewayError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise self._timed_out() from None
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from None

    @asynccontextmanager
    async def stream(
        self, operation: Operation, body: bytes, headers: dict[str, str] | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        session = self._open()
        try:
            resp = await session.post(
                self._url(operation), data=body, headers=headers, timeout=self._stream_timeout
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise self._timed_out() from None
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from None
        try:
            if resp.status >= 400:
                raise await self._failure(resp)
            yield self._chunks(resp)
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                # Closing (not releasing) drops the connection, which is how the upstream
                # learns the client went away and stops generating.
                resp.close()

    async def _chunks(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise self._timed_out() from None
        except aiohttp.ClientError:
            raise UpstreamError(
                f"provider '{self.instance}' closed the stream before it was complete"
            ) from None

    def _timed_out(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"provider '{self.instance}' did not answer within {self._seconds:g} seconds"
        )

    def _unreachable(self, exc: aiohttp.ClientError) -> UpstreamError:
        reason = redact(str(exc), self._secrets)[:_MAX_MESSAGE_CHARS]
        return UpstreamError(f"could not reach provider '{self.instance}': {reason}")

    async def _failure(self, resp: aiohttp.ClientResponse) -> GatewayError:
        try:
            raw = await asyncio.wait_for(resp.content.read(_MAX_ERROR_BODY), timeout=10)
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        return map_status(
            resp.status,
            *self._message(raw, resp.status),
            retry_after=resp.headers.get("Retry-After"),
            instance=self.instance,
        )

    def _message(self, raw: bytes, status: int) -> tuple[str, str | None, str | None]:
        message: str | None = None
        param: str | None = None
        code: str | None = None
        try:
            message, param, code = self._read_error(orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError):
            text = raw.decode("utf-8", "replace").strip()
            message = text or None
        if not message:
            message = f"provider '{self.instance}' answered HTTP {status}"
        return redact(message, self._secrets)[:_MAX_MESSAGE_CHARS], param, code


def map_status(
    status: int,
    message: str,
    param: str | None,
    code: str | None,
    *,
    retry_after: str | None,
    instance: str,
) -> GatewayError:
    """The gateway error for an upstream HTTP status (API.md's enforcement table)."""
    if status in (400, 422):
        return UpstreamBadRequest(message, param=param, code=code)
    if status in (401, 403):
        return UpstreamAuthError(
            f"the provider '{instance}' rejected the gateway's credentials", code="upstream_auth"
        )
    if status == 404:
        return UpstreamNotFound(message, param=param, code=code)
    if status == 413:
        return RequestTooLarge(message)
    if status == 429:
        headers = {"Retry-After": retry_after} if retry_after else None
        return UpstreamRateLimited(message, code=code, headers=headers)
    if status in (408, 504):
        return UpstreamTimeout(f"provider '{instance}' timed out: {message}")
    return UpstreamError(f"provider '{instance}' failed (HTTP {status}): {message}")
