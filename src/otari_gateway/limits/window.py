"""Sliding-window-counter arithmetic shared by every ``Limiter`` backend (pure, no I/O).

Semantics: time is cut into fixed 60 s windows (index ``now_ms // 60_000``). Each scope keeps
two counters per window — requests and tokens — and only the current and previous windows
matter. The usage a new request sees is estimated as::

    used = previous * (60 - elapsed) / 60 + current

i.e. the previous window's count weighted by how much of it still overlaps the rolling
minute that ends now. A request of cost ``c`` (1 for RPM, the token estimate for TPM) is
admitted when ``used + c <= limit``. A token estimate larger than the whole TPM can never
satisfy that; it is admitted only into an idle scope (``used == 0``), so one oversized
request is possible but it then blocks the scope for as long as its tokens weigh.

Burst bound, for a limit ``L``: any interval of ``d <= 60`` seconds admits at most
``L * (1 + d / 60)`` units. Inside one fixed window that is at most ``L``; across a window
boundary the previous window's quota can only be topped up by the share of it that has aged
out (a boundary burst of a few seconds gets ``L`` plus a few percent, where plain fixed
windows allow ``2L``). Any rolling 60 s therefore stays below ``2L``, and approaches it only
when the previous window's whole quota landed in its last instant. For TPM the bound is on
tokens as counted (reservations, net of settlements), plus the one oversized request above;
actual usage differs from it by the estimation error still unsettled, and settling that
error (``adjust_tokens``) moves later admissions accordingly.

The Redis backend runs the same admission rule inside a Lua script (``limits/redis.py``);
both backends then derive the reported decision from the counts with ``judge``.
"""

from __future__ import annotations

from otari_gateway.limits.base import UNLIMITED, LimitDecision, tighter

WINDOW_SECONDS = 60
WINDOW_MS = WINDOW_SECONDS * 1000


def position(now: float) -> tuple[int, int]:
    """The window index containing ``now`` (seconds) and the milliseconds elapsed in it."""
    now_ms = int(now * 1000)
    index = now_ms // WINDOW_MS
    return index, now_ms - index * WINDOW_MS


def load(previous: int, current: int, elapsed_ms: int) -> int:
    """Units used in the rolling minute ending now, scaled by ``WINDOW_MS`` (exact integers).

    ``previous * (WINDOW_MS - elapsed_ms) / WINDOW_MS + current``, multiplied out so that
    Python and the Lua script compare the same integers and no rounding decides admission.
    """
    return previous * (WINDOW_MS - elapsed_ms) + current * WINDOW_MS


def admits(limit: int, previous: int, current: int, cost: int, elapsed_ms: int) -> bool:
    """Whether a request of ``cost`` fits (the rule the Lua script mirrors)."""
    if limit <= 0:
        return False
    return load(previous, current, elapsed_ms) <= max(limit - cost, 0) * WINDOW_MS


def _retry_ms(limit: int, previous: int, current: int, cost: int, elapsed_ms: int) -> int:
    """Milliseconds until the request would fit, assuming no other traffic meanwhile."""
    if limit <= 0:
        return WINDOW_MS
    target = max(limit - cost, 0)
    if current <= target and previous > 0:
        # Wait in this window until enough of the previous one has aged out.
        return WINDOW_MS - (target - current) * WINDOW_MS // previous - elapsed_ms
    # Wait for the next window, where this window's count becomes the weighted one.
    later = WINDOW_MS - target * WINDOW_MS // current if current > 0 else 0
    return WINDOW_MS - elapsed_ms + later


def _ceil_seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))


def judge(limit: int, previous: int, current: int, cost: int, elapsed_ms: int) -> LimitDecision:
    """The decision for one limit, given the counts *before* this request."""
    allowed = admits(limit, previous, current, cost, elapsed_ms)
    spent = load(previous, current + (cost if allowed else 0), elapsed_ms)
    retry = 0
    if not allowed:
        retry = _ceil_seconds(_retry_ms(limit, previous, current, cost, elapsed_ms))
    return LimitDecision(
        allowed=allowed,
        limit=max(limit, 0),
        remaining=max(0, (limit * WINDOW_MS - spent) // WINDOW_MS),
        reset_seconds=_until_empty(previous, current + (cost if allowed else 0), elapsed_ms),
        retry_after=retry,
    )


def _until_empty(previous: int, current: int, elapsed_ms: int) -> int:
    """Seconds until the whole quota is back (OpenAI's meaning of a reset).

    Not the end of the current window: this window's count still weighs on the next one,
    so a client that waited only that long would be refused again (its Retry-After later).
    """
    if current > 0:
        return _ceil_seconds(2 * WINDOW_MS - elapsed_ms)
    if previous > 0:
        return _ceil_seconds(WINDOW_MS - elapsed_ms)
    return 0


def decide(
    *,
    rpm: int | None,
    tpm: int | None,
    tokens: int,
    requests: tuple[int, int],
    token_counts: tuple[int, int],
    elapsed_ms: int,
) -> LimitDecision:
    """The tighter of the RPM and TPM decisions; counts are ``(previous, current)`` pairs."""
    decision = UNLIMITED
    if rpm is not None:
        decision = judge(rpm, *requests, 1, elapsed_ms)
    if tpm is not None:
        decision = tighter(decision, judge(tpm, *token_counts, tokens, elapsed_ms))
    return decision
