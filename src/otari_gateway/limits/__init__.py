"""Request and token rate limits (RPM/TPM) per scope, reserve-then-settle.

``base.py`` defines the ``Limiter`` protocol and ``LimitDecision`` (and documents the
reserve-then-settle contract); ``window.py`` holds the sliding-window arithmetic and its
burst bound; ``memory.py`` and ``redis.py`` are the in-process and shared backends.
``make_limiter`` picks one from configuration.
"""

from __future__ import annotations

from otari_gateway.limits.base import UNLIMITED, LimitDecision, Limiter
from otari_gateway.limits.memory import InMemoryLimiter
from otari_gateway.limits.redis import RedisLimiter

__all__ = [
    "UNLIMITED",
    "InMemoryLimiter",
    "LimitDecision",
    "Limiter",
    "RedisLimiter",
    "make_limiter",
]


def make_limiter(redis_url: str | None) -> Limiter:
    """Redis-backed limits when a URL is configured (shared by every process), else in-process.

    Call once per process at start-up and ``aclose()`` the result at shutdown.
    """
    if redis_url:
        return RedisLimiter(redis_url)
    return InMemoryLimiter()
