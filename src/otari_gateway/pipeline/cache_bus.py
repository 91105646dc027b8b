"""Cache invalidation across processes through Redis pub/sub.

Every process drops its own caches the moment a management write commits; with Redis
configured it also publishes the change, and every other worker and replica drops the same
caches on receipt — a revoked key stops working everywhere at once instead of within the
cache lifetime. Without Redis, or while it is unreachable, the 1-second cache lifetime is
the bound.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

CHANNEL = "otari:cache-invalidation"
TOPICS = frozenset({"keys", "users", "pricing"})
_RECONNECT_SECONDS = 1.0


class CacheBus:
    def __init__(self, redis_url: str, on_change: Callable[[str], None]) -> None:
        self._redis: Redis = Redis.from_url(
            redis_url, socket_timeout=None, socket_connect_timeout=1
        )
        self._on_change = on_change
        self._send, self._receive = anyio.create_memory_object_stream[str](256)

    def publish(self, topic: str) -> None:
        """Queue a change for the other processes; dropped (TTL still bounds it) if full."""
        try:
            self._send.send_nowait(topic)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            log.warning("cache_bus.dropped", topic=topic)

    async def run(self) -> None:
        """Publish and listen until cancelled (at shutdown)."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._publish_loop)
            await self._listen_forever()

    async def _publish_loop(self) -> None:
        async with self._receive:
            async for topic in self._receive:
                try:
                    await self._redis.publish(CHANNEL, topic)
                except RedisError as exc:
                    log.warning("cache_bus.publish_failed", error=type(exc).__name__)

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            topic = message["data"].decode()
                            if topic in TOPICS:
                                self._on_change(topic)
            except RedisError as exc:
                log.warning("cache_bus.listen_failed", error=type(exc).__name__)
                await anyio.sleep(_RECONNECT_SECONDS)

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._redis.aclose()
