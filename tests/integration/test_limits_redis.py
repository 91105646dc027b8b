"""``RedisLimiter`` against a real Redis: the in-memory behaviour, shared across processes.

A private ``redis-server`` on a free port per test session keeps these tests away from any
other Redis state; each test uses its own scope names.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import pytest
import redis.asyncio
from structlog.testing import capture_logs

from otari_gateway.limits import UNLIMITED, InMemoryLimiter, LimitDecision
from otari_gateway.limits.redis import TTL_MS, RedisLimiter, window_key
from otari_gateway.limits.window import position

T0 = 60.0 * 1_000_000


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, "redis-server exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


@contextlib.contextmanager
def _redis_server(port: int) -> Iterator[str]:
    """A throwaway ``redis-server`` on ``port``, stopped by its PID on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_redis(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with _redis_server(_free_port()) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(redis_url: str, clock: FakeClock) -> AsyncIterator[Callable[[], RedisLimiter]]:
    """Build limiters (one per simulated gateway process) on the session's Redis.

    These tests check counting, so they use generous timeouts: on a loaded machine a burst of
    cold connections can exceed the production 0.25 s, and the limiter would (rightly) fail
    open and spoil an exact count. The timeout behaviour has its own tests below.
    """
    made: list[RedisLimiter] = []

    def build() -> RedisLimiter:
        made.append(RedisLimiter(redis_url, clock=clock, timeout=2.0))
        return made[-1]

    yield build
    for limiter in made:
        await limiter.aclose()


@pytest.fixture
def scope(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{random.randrange(10**9)}"


async def _burst(limiter: RedisLimiter, scope: str, n: int, **limits: int) -> int:
    allowed = 0
    for _ in range(n):
        decision = await limiter.acquire(
            scope, rpm=limits.get("rpm"), tpm=limits.get("tpm"), tokens=limits.get("tokens", 0)
        )
        allowed += decision.allowed
    return allowed


# --- the in-memory behaviour, on Redis -------------------------------------------------


async def test_rpm_allows_n_then_refuses(make: Callable[[], RedisLimiter], scope: str) -> None:
    limiter = make()
    remaining = [(await limiter.acquire(scope, rpm=3, tpm=None, tokens=0)).remaining for _ in "abc"]
    assert remaining == [2, 1, 0]
    refused = await limiter.acquire(scope, rpm=3, tpm=None, tokens=0)
    assert not refused.allowed
    assert refused.retry_after > 0
    assert refused.headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "120",
        "Retry-After": str(refused.retry_after),
    }


async def test_tpm_reserves_adjusts_and_floors_at_zero(
    make: Callable[[], RedisLimiter], scope: str
) -> None:
    limiter = make()
    assert (await limiter.acquire(scope, rpm=None, tpm=1000, tokens=600)).remaining == 400
    assert not (await limiter.acquire(scope, rpm=None, tpm=1000, tokens=600)).allowed
    await limiter.adjust_tokens(scope, 200 - 600)
    assert (await limiter.acquire(scope, rpm=None, tpm=1000, tokens=600)).remaining == 200
    await limiter.adjust_tokens(scope, -10_000)
    decision = await limiter.acquire(scope, rpm=None, tpm=1000, tokens=1000)
    assert (decision.allowed, decision.remaining) == (True, 0)


async def test_refused_requests_consume_nothing(
    make: Callable[[], RedisLimiter], scope: str
) -> None:
    limiter = make()
    assert (await limiter.acquire(scope, rpm=2, tpm=100, tokens=60)).allowed
    for _ in range(5):
        assert not (await limiter.acquire(scope, rpm=2, tpm=100, tokens=60)).allowed
    assert (await limiter.acquire(scope, rpm=2, tpm=100, tokens=40)).allowed
    for _ in range(5):
        assert not (await limiter.acquire(scope, rpm=2, tpm=100, tokens=0)).allowed
    await limiter.adjust_tokens(scope, -100)
    assert (await limiter.acquire(scope, rpm=3, tpm=100, tokens=100)).allowed


async def test_scopes_are_independent(make: Callable[[], RedisLimiter], scope: str) -> None:
    limiter = make()
    assert await _burst(limiter, scope + "a", 5, rpm=2) == 2
    assert await _burst(limiter, scope + "b", 5, rpm=2) == 2


async def test_window_rollover(
    make: Callable[[], RedisLimiter], scope: str, clock: FakeClock
) -> None:
    limiter = make()
    assert await _burst(limiter, scope, 15, rpm=10) == 10
    clock.advance(60)
    assert await _burst(limiter, scope, 5, rpm=10) == 0
    clock.advance(30)
    assert await _burst(limiter, scope, 10, rpm=10) == 5
    clock.advance(120)
    assert await _burst(limiter, scope, 15, rpm=10) == 10


async def test_keys_are_namespaced_and_expire(
    make: Callable[[], RedisLimiter], scope: str, redis_url: str, clock: FakeClock
) -> None:
    limiter = make()
    await limiter.acquire(scope, rpm=5, tpm=100, tokens=7)
    index, _ = position(clock())
    key = window_key(scope, index)
    assert key == f"otari:rl:{{{scope}}}:{index}"
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.hgetall(key) == {b"r": b"1", b"t": b"7"}
        assert 0 < await client.pttl(key) <= TTL_MS
    finally:
        await client.aclose()


async def test_no_limits_never_touches_redis() -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0")
    try:
        assert await limiter.acquire("k", rpm=None, tpm=None, tokens=5) == UNLIMITED
    finally:
        await limiter.aclose()


async def test_real_clock_path(redis_url: str, scope: str) -> None:
    limiter = RedisLimiter(redis_url)
    try:
        decision = await limiter.acquire(scope, rpm=100, tpm=None, tokens=0)
        assert decision.allowed
        assert 60 < decision.reset_seconds <= 120
    finally:
        await limiter.aclose()


async def test_same_decisions_as_the_in_memory_limiter(
    make: Callable[[], RedisLimiter], scope: str, clock: FakeClock
) -> None:
    """One random workload through both backends: every decision must match exactly."""
    shared = make()
    memory = InMemoryLimiter(clock=clock)
    rng = random.Random(7)
    for _ in range(600):
        roll = rng.random()
        if roll < 0.15:
            clock.advance(rng.uniform(0, 40))
        elif roll < 0.3:
            delta = rng.randint(-300, 300)
            await shared.adjust_tokens(scope, delta)
            await memory.adjust_tokens(scope, delta)
        else:
            limits = {"rpm": rng.choice([None, 5, 20]), "tpm": rng.choice([None, 500, 2000])}
            tokens = rng.randint(0, 400)
            theirs = await shared.acquire(scope, **limits, tokens=tokens)
            ours = await memory.acquire(scope, **limits, tokens=tokens)
            assert theirs == ours


# --- shared across processes -----------------------------------------------------------


async def test_two_processes_share_one_limit(
    make: Callable[[], RedisLimiter], scope: str, clock: FakeClock
) -> None:
    clock.advance(20)
    first, second = make(), make()
    results: list[LimitDecision] = []

    async def hit(limiter: RedisLimiter) -> None:
        results.append(await limiter.acquire(scope, rpm=30, tpm=None, tokens=0))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(hit, first)
            group.start_soon(hit, second)
    assert len(results) == 100
    assert sum(r.allowed for r in results) == 30
    assert all(r.retry_after > 0 for r in results if not r.allowed)


async def test_two_processes_share_one_token_budget(
    make: Callable[[], RedisLimiter], scope: str
) -> None:
    first, second = make(), make()
    results: list[LimitDecision] = []

    async def hit(limiter: RedisLimiter) -> None:
        results.append(await limiter.acquire(scope, rpm=None, tpm=1000, tokens=15))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(hit, first)
            group.start_soon(hit, second)
    assert sum(r.allowed for r in results) == 66  # 66 * 15 = 990 <= 1000 < 67 * 15


# --- Redis trouble: fail open, fast ----------------------------------------------------


async def test_fails_open_when_redis_is_down() -> None:
    # No cool-down: every call really tries Redis, and the warning is still logged once.
    limiter = RedisLimiter(f"redis://127.0.0.1:{_free_port()}/0", cooldown=0)
    try:
        with capture_logs() as logs:
            started = time.monotonic()
            for _ in range(3):
                assert (await limiter.acquire("k", rpm=1, tpm=1, tokens=10)) == UNLIMITED
                await limiter.adjust_tokens("k", 5)
            assert time.monotonic() - started < 1.0
    finally:
        await limiter.aclose()
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["event"] == "rate_limiter_unavailable"


async def test_a_silent_redis_cannot_stall_requests() -> None:
    """A server that accepts connections but never answers: bounded by the timeouts."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", timeout=0.1, cooldown=0)
        try:
            started = time.monotonic()
            for _ in range(2):
                assert (await limiter.acquire("k", rpm=1, tpm=None, tokens=0)).allowed
            assert time.monotonic() - started < 2 * 4 * 0.1 + 0.5
        finally:
            await limiter.aclose()


async def test_recovers_once_redis_is_back(scope: str) -> None:
    port = _free_port()
    limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", cooldown=0.2)
    try:
        assert await limiter.acquire(scope, rpm=1, tpm=None, tokens=0) == UNLIMITED
        with _redis_server(port):
            await anyio.sleep(0.25)  # the cool-down after the failure is over
            assert (await limiter.acquire(scope, rpm=1, tpm=None, tokens=0)).limit == 1
            assert not (await limiter.acquire(scope, rpm=1, tpm=None, tokens=0)).allowed
    finally:
        await limiter.aclose()
