"""The in-process limiter and the sliding-window arithmetic, driven by a fake clock."""

from __future__ import annotations

import itertools

import pytest

from otari_gateway.limits import (
    UNLIMITED,
    InMemoryLimiter,
    LimitDecision,
    make_limiter,
)
from otari_gateway.limits.base import tighter
from otari_gateway.limits.redis import RedisLimiter
from otari_gateway.limits.window import WINDOW_MS, admits, judge, position

T0 = 60.0 * 1_000_000  # the start of a window


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> InMemoryLimiter:
    return InMemoryLimiter(clock=clock)


async def _burst(
    limiter: InMemoryLimiter,
    scope: str,
    n: int,
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    tokens: int = 0,
) -> int:
    allowed = 0
    for _ in range(n):
        decision = await limiter.acquire(scope, rpm=rpm, tpm=tpm, tokens=tokens)
        allowed += decision.allowed
    return allowed


# --- RPM -------------------------------------------------------------------------------


async def test_rpm_allows_n_then_refuses(limiter: InMemoryLimiter) -> None:
    remaining = []
    for _ in range(3):
        decision = await limiter.acquire("k", rpm=3, tpm=None, tokens=0)
        assert decision.allowed
        remaining.append(decision.remaining)
    assert remaining == [2, 1, 0]
    refused = await limiter.acquire("k", rpm=3, tpm=None, tokens=0)
    assert not refused.allowed
    assert refused.retry_after > 0
    assert refused.headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "120",
        "Retry-After": str(refused.retry_after),
    }


async def test_allowed_headers_carry_no_retry_after(
    limiter: InMemoryLimiter, clock: FakeClock
) -> None:
    clock.advance(45.2)
    decision = await limiter.acquire("k", rpm=10, tpm=None, tokens=0)
    assert decision.headers() == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "9",
        "X-RateLimit-Reset": "75",
    }


async def test_retry_after_is_when_the_request_fits(
    limiter: InMemoryLimiter, clock: FakeClock
) -> None:
    for _ in range(3):
        assert (await limiter.acquire("k", rpm=3, tpm=None, tokens=0)).allowed
    retry = (await limiter.acquire("k", rpm=3, tpm=None, tokens=0)).retry_after
    clock.advance(retry - 1)
    assert not (await limiter.acquire("k", rpm=3, tpm=None, tokens=0)).allowed
    clock.advance(1)
    assert (await limiter.acquire("k", rpm=3, tpm=None, tokens=0)).allowed


@pytest.mark.parametrize("start", [0.0, 25.0, 59.5])
async def test_after_reset_seconds_the_whole_quota_is_back(
    limiter: InMemoryLimiter, clock: FakeClock, start: float
) -> None:
    # Reset used to be the end of the fixed window; a client that waited that long was
    # refused again, with a later Retry-After.
    clock.advance(start)
    last = await limiter.acquire("k", rpm=1, tpm=None, tokens=0)
    refused = await limiter.acquire("k", rpm=1, tpm=None, tokens=0)
    assert not refused.allowed
    assert last.reset_seconds >= refused.retry_after
    clock.advance(last.reset_seconds)
    decision = await limiter.acquire("k", rpm=1, tpm=None, tokens=0)
    assert (decision.allowed, decision.remaining) == (True, 0)
    assert (await limiter.acquire("k", rpm=5, tpm=None, tokens=0)).remaining == 3


async def test_no_limits_is_unlimited_and_untracked(limiter: InMemoryLimiter) -> None:
    decision = await limiter.acquire("k", rpm=None, tpm=None, tokens=10_000)
    assert decision == UNLIMITED
    assert decision.allowed
    assert decision.headers() == {}
    assert len(limiter) == 0


async def test_zero_limit_refuses_everything(limiter: InMemoryLimiter) -> None:
    decision = await limiter.acquire("k", rpm=0, tpm=None, tokens=0)
    assert not decision.allowed
    assert decision.retry_after > 0
    assert decision.headers()["X-RateLimit-Limit"] == "0"


# --- TPM -------------------------------------------------------------------------------


async def test_tpm_reserves_and_adjust_settles(limiter: InMemoryLimiter) -> None:
    first = await limiter.acquire("k", rpm=None, tpm=1000, tokens=600)
    assert (first.allowed, first.limit, first.remaining) == (True, 1000, 400)
    assert not (await limiter.acquire("k", rpm=None, tpm=1000, tokens=600)).allowed
    await limiter.adjust_tokens("k", 200 - 600)  # the first request used 200 tokens
    second = await limiter.acquire("k", rpm=None, tpm=1000, tokens=600)
    assert (second.allowed, second.remaining) == (True, 200)
    await limiter.adjust_tokens("k", 250)  # and this one used 850
    assert not (await limiter.acquire("k", rpm=None, tpm=1000, tokens=1)).allowed


async def test_adjust_never_goes_below_zero(limiter: InMemoryLimiter) -> None:
    assert (await limiter.acquire("k", rpm=None, tpm=1000, tokens=100)).allowed
    await limiter.adjust_tokens("k", -5000)
    decision = await limiter.acquire("k", rpm=None, tpm=1000, tokens=1000)
    assert (decision.allowed, decision.remaining) == (True, 0)


async def test_refund_for_unknown_scope_creates_nothing(limiter: InMemoryLimiter) -> None:
    await limiter.adjust_tokens("never-seen", -10)
    await limiter.adjust_tokens("never-seen", 0)
    assert len(limiter) == 0


async def test_oversized_estimate_only_enters_an_idle_scope(
    limiter: InMemoryLimiter, clock: FakeClock
) -> None:
    assert (await limiter.acquire("k", rpm=None, tpm=100, tokens=500)).allowed
    refused = await limiter.acquire("k", rpm=None, tpm=100, tokens=500)
    assert not refused.allowed
    assert refused.retry_after == 120  # this window, then all of the next one
    clock.advance(119)
    assert not (await limiter.acquire("k", rpm=None, tpm=100, tokens=500)).allowed
    assert (await limiter.acquire("k", rpm=None, tpm=100, tokens=1)).allowed  # small ones fit
    await limiter.adjust_tokens("k", -1)
    clock.advance(1)
    assert (await limiter.acquire("k", rpm=None, tpm=100, tokens=500)).allowed


# --- atomicity and scoping -------------------------------------------------------------


async def test_refused_requests_consume_nothing(limiter: InMemoryLimiter) -> None:
    assert (await limiter.acquire("k", rpm=2, tpm=100, tokens=60)).allowed
    for _ in range(5):  # refused by TPM: must not count against RPM
        assert not (await limiter.acquire("k", rpm=2, tpm=100, tokens=60)).allowed
    last = await limiter.acquire("k", rpm=2, tpm=100, tokens=40)
    assert last.allowed
    for _ in range(5):  # refused by RPM: must not reserve tokens
        assert not (await limiter.acquire("k", rpm=2, tpm=100, tokens=0)).allowed
    await limiter.adjust_tokens("k", -100)
    assert (await limiter.acquire("k", rpm=3, tpm=100, tokens=100)).allowed


async def test_scopes_are_independent(limiter: InMemoryLimiter) -> None:
    assert await _burst(limiter, "a", 5, rpm=2) == 2
    assert await _burst(limiter, "b", 5, rpm=2) == 2
    assert await _burst(limiter, "b", 5, rpm=3) == 1


async def test_reported_decision_is_the_tighter_limit(limiter: InMemoryLimiter) -> None:
    decision = await limiter.acquire("k", rpm=2, tpm=1000, tokens=10)
    assert (decision.limit, decision.remaining) == (2, 1)  # 50% left vs 99%
    decision = await limiter.acquire("k2", rpm=100, tpm=1000, tokens=900)
    assert (decision.limit, decision.remaining) == (1000, 100)
    refused = await limiter.acquire("k2", rpm=100, tpm=1000, tokens=900)
    assert (refused.allowed, refused.limit) == (False, 1000)


# --- windows ---------------------------------------------------------------------------


async def test_window_rollover_weighs_the_previous_window(
    limiter: InMemoryLimiter, clock: FakeClock
) -> None:
    assert await _burst(limiter, "k", 15, rpm=10) == 10
    clock.advance(60)  # next window, nothing of the previous one has aged out yet
    assert await _burst(limiter, "k", 5, rpm=10) == 0
    clock.advance(30)  # half of the previous window still weighs: 5 left
    assert await _burst(limiter, "k", 10, rpm=10) == 5
    clock.advance(120)  # two windows later: a clean slate
    assert await _burst(limiter, "k", 15, rpm=10) == 10


async def test_boundary_burst_is_bounded(limiter: InMemoryLimiter, clock: FakeClock) -> None:
    limit = 60
    clock.advance(59.5)
    assert await _burst(limiter, "k", 100, rpm=limit) == limit
    clock.advance(6.5)  # 6 s into the next window
    burst = await _burst(limiter, "k", 100, rpm=limit)
    # Fixed windows would admit another 60; the bound is L * (1 + d/60) over d = 6.5 s.
    assert burst == 6
    assert limit + burst <= limit * (1 + 6.5 / 60)


async def test_steady_traffic_never_exceeds_twice_the_limit_per_rolling_minute(
    limiter: InMemoryLimiter, clock: FakeClock
) -> None:
    limit = 20
    admitted: list[float] = []
    for _ in range(1200):  # ten minutes, a request every half second
        if (await limiter.acquire("k", rpm=limit, tpm=None, tokens=0)).allowed:
            admitted.append(clock.now)
        clock.advance(0.5)
    for start in admitted:
        in_minute = sum(1 for t in admitted if start <= t < start + 60)
        assert in_minute < 2 * limit
    assert len(admitted) <= limit * 11  # ~ the limit per minute over ten minutes


# --- memory bounds ---------------------------------------------------------------------


async def test_idle_scopes_are_evicted(limiter: InMemoryLimiter, clock: FakeClock) -> None:
    for i in range(1000):
        await limiter.acquire(f"scope-{i}", rpm=5, tpm=None, tokens=0)
    assert len(limiter) == 1000
    clock.advance(60)
    await limiter.acquire("fresh", rpm=5, tpm=None, tokens=0)
    assert len(limiter) == 1001  # the previous window still weighs: keep them
    clock.advance(60)
    await limiter.acquire("fresh", rpm=5, tpm=None, tokens=0)
    assert len(limiter) == 1


async def test_scope_count_is_capped(clock: FakeClock) -> None:
    limiter = InMemoryLimiter(clock=clock, max_scopes=100)
    for i in range(10_000):
        await limiter.acquire(f"scope-{i}", rpm=5, tpm=None, tokens=0)
        assert len(limiter) <= 100
    # The most recently used scopes keep their counts.
    assert await _burst(limiter, "scope-9999", 10, rpm=5) == 4


def test_max_scopes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_scopes"):
        InMemoryLimiter(max_scopes=0)


async def test_aclose_forgets_everything(limiter: InMemoryLimiter) -> None:
    await limiter.acquire("k", rpm=1, tpm=None, tokens=0)
    await limiter.aclose()
    assert len(limiter) == 0


# --- pure arithmetic -------------------------------------------------------------------


def test_position_splits_time_into_minutes() -> None:
    assert position(T0) == (1_000_000, 0)
    assert position(T0 + 59.999) == (1_000_000, 59_999)
    assert position(T0 + 60) == (1_000_001, 0)


def _after(previous: int, current: int, elapsed: int, ms: int) -> tuple[int, int, int]:
    """The counts and position ``ms`` later with no traffic meanwhile."""
    moved = elapsed + ms
    windows, elapsed = divmod(moved, WINDOW_MS)
    if windows == 0:
        return previous, current, elapsed
    if windows == 1:
        return current, 0, elapsed
    return 0, 0, elapsed


def test_retry_after_is_exact() -> None:
    """Refused 1 s before ``retry_after`` (assuming no other traffic), admitted at it."""
    grid = itertools.product(
        [1, 7, 100], [0, 3, 50, 200], [0, 1, 6, 99, 150], [1, 5, 100, 400], [0, 1, 29_500]
    )
    refused = [case for case in grid if not admits(*case)]
    assert len(refused) > 100
    for limit, previous, current, cost, elapsed in refused:
        decision = judge(limit, previous, current, cost, elapsed)
        assert not decision.allowed
        assert decision.retry_after >= 1
        later = _after(previous, current, elapsed, decision.retry_after * 1000)
        assert admits(limit, later[0], later[1], cost, later[2]), (limit, previous, current)
        sooner = _after(previous, current, elapsed, (decision.retry_after - 1) * 1000)
        if decision.retry_after > 1:
            assert not admits(limit, sooner[0], sooner[1], cost, sooner[2]), (limit, previous)


def test_tighter_prefers_a_refusal_then_less_headroom() -> None:
    ok_rpm = LimitDecision(True, 10, 5, 30, 0)
    ok_tpm = LimitDecision(True, 1000, 100, 30, 0)
    no_rpm = LimitDecision(False, 10, 0, 30, 12)
    no_tpm = LimitDecision(False, 1000, 3, 30, 40)
    assert tighter(ok_rpm, ok_tpm) is ok_tpm
    assert tighter(ok_tpm, ok_rpm) is ok_tpm
    assert tighter(ok_rpm, no_tpm) is no_tpm
    assert tighter(no_rpm, ok_tpm) is no_rpm
    assert tighter(no_rpm, no_tpm) is no_tpm
    assert tighter(UNLIMITED, ok_rpm) is ok_rpm
    assert tighter(ok_rpm, UNLIMITED) is ok_rpm


async def test_make_limiter_picks_the_backend() -> None:
    assert isinstance(make_limiter(None), InMemoryLimiter)
    limiter = make_limiter("redis://127.0.0.1:1/0")  # never connected to
    assert isinstance(limiter, RedisLimiter)
    await limiter.aclose()
