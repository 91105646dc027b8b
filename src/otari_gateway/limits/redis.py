"""``RedisLimiter``: the ``Limiter`` backend shared by every worker and replica.

One ``redis.asyncio.Redis`` client (one bounded connection pool) per process. A scope's
window ``w`` is the hash ``otari:rl:{<scope>}:<w>`` with fields ``r`` (requests) and ``t``
(tokens); the braces are a Redis Cluster hash tag, so a scope's windows share a slot and the
scripts below may touch two of them. Every write re-arms an expiry of two windows, so a
window lives through its successor (where it is still weighed) and then disappears.

``acquire`` is one round trip: a Lua script reads the current and previous windows, applies
the admission rule of ``limits/window.py`` to RPM and TPM together, and counts the request
and reserves its tokens only when both fit. ``adjust_tokens`` is one round trip too
(``HINCRBY`` floored at 0 in Lua). Windows are indexed by the gateway's clock, so hosts are
expected to keep NTP time; a skew of ``s`` seconds only shifts which window a request near a
boundary lands in.

Redis trouble never takes the gateway down: socket and pool-wait timeouts (0.25 s by
default), no client-side retries, and a hard deadline per call bound the added latency; on
any Redis error the limiter fails **open** (``UNLIMITED``), logs a warning at most once per
10 s, and skips Redis for a short cool-down (1 s) so an outage does not cost every request
a timeout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from otari_gateway.limits.base import UNLIMITED, LimitDecision
from otari_gateway.limits.window import WINDOW_MS, decide, position

log = structlog.get_logger("otari.limits")

KEY_PREFIX = "otari:rl"
TTL_MS = 2 * WINDOW_MS
WARN_INTERVAL = 10.0
NO_LIMIT = -1

# KEYS: current window, previous window.
# ARGV: elapsed_ms, window_ms, rpm, tpm (-1 = none), tokens, ttl_ms.
# Returns {allowed, prev_requests, requests, prev_tokens, tokens} (counts before this call).
_ACQUIRE = """
local elapsed = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local rpm, tpm, cost = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cur = redis.call('HMGET', KEYS[1], 'r', 't')
local prev = redis.call('HMGET', KEYS[2], 'r', 't')
local cr, ct = tonumber(cur[1]) or 0, tonumber(cur[2]) or 0
local pr, pt = tonumber(prev[1]) or 0, tonumber(prev[2]) or 0
local function admits(limit, p, c, n)
  if limit < 0 then return true end
  if limit == 0 then return false end
  return p * (window - elapsed) + c * window <= math.max(limit - n, 0) * window
end
local allowed = 0
if admits(rpm, pr, cr, 1) and admits(tpm, pt, ct, cost) then
  allowed = 1
  redis.call('HINCRBY', KEYS[1], 'r', 1)
  redis.call('HINCRBY', KEYS[1], 't', cost)
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
return {allowed, pr, cr, pt, ct}
"""

# KEYS: current window. ARGV: delta, ttl_ms. Returns the new token count.
_ADJUST = """
local v = redis.call('HINCRBY', KEYS[1], 't', ARGV[1])
if v < 0 then
  redis.call('HSET', KEYS[1], 't', 0)
  v = 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return v
"""

_FAILURES = (RedisError, OSError, TimeoutError)


def window_key(scope: str, index: int) -> str:
    """The Redis key of ``scope``'s window ``index``."""
    return f"{KEY_PREFIX}:{{{scope}}}:{index}"


class RedisLimiter:
    """Sliding-window RPM/TPM limits in Redis, shared by every process that points at it.

    ``clock`` returns seconds (wall time by default; tests inject a fake). ``timeout``
    bounds connecting, each socket read/write and waiting for a pooled connection;
    ``max_connections`` bounds the pool; ``cooldown`` is how long to skip Redis after an
    error.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 0.25,
        max_connections: int = 32,
        cooldown: float = 1.0,
    ) -> None:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = Redis.from_pool(pool)
        self._acquire_script = self._client.register_script(_ACQUIRE)
        self._adjust_script = self._client.register_script(_ADJUST)
        self._clock = clock
        # Connect, handshake and command each get ``timeout``; the whole call gets this.
        self._deadline = 4 * timeout
        self._cooldown = cooldown
        self._skip_until = -math.inf
        self._warned_at = -math.inf

    async def acquire(
        self, scope: str, *, rpm: int | None, tpm: int | None, tokens: int
    ) -> LimitDecision:
        if (rpm is None and tpm is None) or self._skipping():
            return UNLIMITED
        tokens = max(tokens, 0)
        index, elapsed_ms = position(self._clock())
        keys = [window_key(scope, index), window_key(scope, index - 1)]
        args = [elapsed_ms, WINDOW_MS, _arg(rpm), _arg(tpm), tokens, TTL_MS]
        reply = await self._call(self._acquire_script, keys, args)
        if reply is None:
            return UNLIMITED
        _, prev_requests, requests, prev_tokens, used_tokens = (int(v) for v in reply)
        return decide(
            rpm=rpm,
            tpm=tpm,
            tokens=tokens,
            requests=(prev_requests, requests),
            token_counts=(prev_tokens, used_tokens),
            elapsed_ms=elapsed_ms,
        )

    async def adjust_tokens(self, scope: str, delta: int) -> None:
        if delta == 0 or self._skipping():
            return
        index, _ = position(self._clock())
        await self._call(self._adjust_script, [window_key(scope, index)], [delta, TTL_MS])

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, script: AsyncScript, keys: list[str], args: list[int]) -> Any:
        """Run a registered script; ``None`` (after noting the failure) if Redis failed."""
        try:
            with anyio.fail_after(self._deadline):
                return await script(keys=keys, args=args)
        except _FAILURES as error:
            self._failed(error)
            return None

    def _skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    def _failed(self, error: BaseException) -> None:
        now = time.monotonic()
        self._skip_until = now + self._cooldown
        if now - self._warned_at >= WARN_INTERVAL:
            self._warned_at = now
            log.warning(
                "rate_limiter_unavailable",
                error=f"{type(error).__name__}: {error}",
                action="failing open",
            )


def _arg(limit: int | None) -> int:
    """The script's encoding of a limit: -1 for none, and a negative limit refuses like 0."""
    return NO_LIMIT if limit is None else max(limit, 0)
