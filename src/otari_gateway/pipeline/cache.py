"""A small bounded TTL cache for the request path's key and user lookups.

Entries live ``ttl`` seconds, so a management write made on another process is seen
within that time; a write on this process clears the cache at once. Negative answers are
cached too, so a flood of unknown keys cannot turn into a flood of database reads. Loads
are single-flight: when an entry expires under load, the requests that miss it together
share one database read instead of each making their own.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V | None]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._generation = 0

    async def get(self, key: str, load: Callable[[str], Awaitable[V | None]]) -> V | None:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._loading.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            entry = self._entries.get(key)
            if entry is not None:
                return entry[1]
            # The shared load failed or was discarded: load for this request.
            return await load(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[key] = done
        generation = self._generation
        try:
            value = await load(key)
            if generation == self._generation:
                # A clear() during the load means the value may predate a write: don't keep it.
                self._store(key, now, value)
            return value
        finally:
            del self._loading[key]
            done.set_result(None)

    def _store(self, key: str, now: float, value: V | None) -> None:
        self._entries[key] = (now + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1
