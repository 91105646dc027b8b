"""``InMemoryLimiter``: the per-process ``Limiter`` backend.

Limits are per process: with N workers a scope effectively gets N times its limit, so
multi-worker and multi-replica deployments should configure Redis (``limits/redis.py``).

Each call is O(1) and needs no lock: ``acquire`` never awaits, so on one event loop the
check-and-count is atomic. Memory is bounded two ways. Scopes live in an LRU-ordered dict;
a scope untouched for two windows holds nothing that matters any more, and since the least
recently used scopes sit at the front, every call pops idle ones from there (amortised
O(1): each scope is popped at most once). A hard cap (``max_scopes``) evicts the least
recently used scope even if not idle; that scope then starts afresh, erring on the side of
admitting.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from otari_gateway.limits.base import UNLIMITED, LimitDecision
from otari_gateway.limits.window import decide, position

DEFAULT_MAX_SCOPES = 100_000


class _Counters:
    """One scope's requests and tokens in its current and previous windows."""

    __slots__ = ("index", "prev_requests", "prev_tokens", "requests", "tokens")

    def __init__(self, index: int) -> None:
        self.index = index
        self.prev_requests = 0
        self.prev_tokens = 0
        self.requests = 0
        self.tokens = 0

    def roll(self, index: int) -> None:
        """Move to window ``index``, dropping every window older than the previous one."""
        if index <= self.index:
            return  # same window (or the wall clock stepped back: keep the counts)
        if index == self.index + 1:
            self.prev_requests, self.prev_tokens = self.requests, self.tokens
        else:
            self.prev_requests = self.prev_tokens = 0
        self.requests = self.tokens = 0
        self.index = index


class InMemoryLimiter:
    """Sliding-window RPM/TPM limits held in this process.

    ``clock`` returns seconds (wall time by default); tests inject a fake one instead of
    sleeping. ``max_scopes`` caps how many scopes are tracked at once.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_scopes: int = DEFAULT_MAX_SCOPES,
    ) -> None:
        if max_scopes < 1:
            raise ValueError("max_scopes must be at least 1")
        self._clock = clock
        self._max_scopes = max_scopes
        self._scopes: OrderedDict[str, _Counters] = OrderedDict()

    def __len__(self) -> int:
        """How many scopes are tracked (for tests and metrics)."""
        return len(self._scopes)

    async def acquire(
        self, scope: str, *, rpm: int | None, tpm: int | None, tokens: int
    ) -> LimitDecision:
        if rpm is None and tpm is None:
            return UNLIMITED
        tokens = max(tokens, 0)
        index, elapsed_ms = position(self._clock())
        counters = self._touch(scope, index)
        decision = decide(
            rpm=rpm,
            tpm=tpm,
            tokens=tokens,
            requests=(counters.prev_requests, counters.requests),
            token_counts=(counters.prev_tokens, counters.tokens),
            elapsed_ms=elapsed_ms,
        )
        if decision.allowed:
            counters.requests += 1
            counters.tokens += tokens
        return decision

    async def adjust_tokens(self, scope: str, delta: int) -> None:
        if delta == 0:
            return
        index, _ = position(self._clock())
        if delta < 0 and scope not in self._scopes:
            return  # nothing to refund: the scope was evicted or never limited
        counters = self._touch(scope, index)
        counters.tokens = max(0, counters.tokens + delta)

    async def aclose(self) -> None:
        self._scopes.clear()

    def _touch(self, scope: str, index: int) -> _Counters:
        """The scope's counters rolled to ``index``, marked most recently used."""
        self._evict_idle(index)
        counters = self._scopes.get(scope)
        if counters is None:
            counters = self._scopes[scope] = _Counters(index)
            if len(self._scopes) > self._max_scopes:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(scope)
            counters.roll(index)
        return counters

    def _evict_idle(self, index: int) -> None:
        """Drop least-recently-used scopes whose last window is older than the previous."""
        while self._scopes:
            oldest = next(iter(self._scopes.values()))
            if oldest.index >= index - 1:
                return
            self._scopes.popitem(last=False)
