"""Request and token rate limits (RPM/TPM) per scope, reserve-then-settle.

``base.py`` defines the ``Limiter`` protocol and ``LimitDecision`` (and documents the
reserve-then-settle contract); ``window.py`` holds the sliding-window arithmetic and its
burst bound; ``memory.py`` and ``redis.py`` are the in-process and shared backends.
``make_limiter`` picks one from configuration.
"""

from __future__ import annotations

from otari_gateway.limits.base import UNLIMITED, LimitDecision, Limiter
from otari_gateway.limits.memory import InMemoryLimiter

__all__ = [
    "UNLIMITED",
    "InMemoryLimiter",
    "LimitDecision",
    "Limiter",
    "make_limiter",
]


def make_limiter(redis_url: str | None) -> Limiter:
    """Redis-backed limits when a URL is configured (shared by every process), else in-process.

    Call once per process at start-up and ``aclose()`` the result at shutdown.
    """
    if redis_url:
        # Imported only when used: redis-py costs each worker ~5 MB of memory.
        from otari_gateway.limits.redis import RedisLimiter

        return RedisLimiter(redis_url)
    return InMemoryLimiter()
