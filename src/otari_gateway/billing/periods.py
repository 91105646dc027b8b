"""Budget periods: when a budget that started at some instant next resets.

Rolling periods add ``budget_duration_sec``; calendar alignments reset at the start of the
next UTC day, ISO week (Monday) or month. Pure functions on timezone-aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum


class ResetAlignment(StrEnum):
    CALENDAR_DAY = "calendar_day"
    CALENDAR_WEEK = "calendar_week"
    CALENDAR_MONTH = "calendar_month"


def _start_of_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def next_reset(
    after: datetime,
    *,
    duration_sec: int | None,
    alignment: ResetAlignment | str | None,
) -> datetime | None:
    """The first reset strictly after ``after``, or None for a budget that never resets."""
    if after.tzinfo is None:
        raise ValueError("budget period math needs timezone-aware datetimes")
    if duration_sec:
        return after + timedelta(seconds=duration_sec)
    if alignment is None:
        return None
    day = _start_of_day(after)
    match ResetAlignment(alignment):
        case ResetAlignment.CALENDAR_DAY:
            return day + timedelta(days=1)
        case ResetAlignment.CALENDAR_WEEK:
            return day + timedelta(days=7 - day.weekday())
        case ResetAlignment.CALENDAR_MONTH:
            if day.month == 12:
                return day.replace(year=day.year + 1, month=1, day=1)
            return day.replace(month=day.month + 1, day=1)


def advance(
    due: datetime,
    now: datetime,
    *,
    duration_sec: int | None,
    alignment: ResetAlignment | str | None,
) -> datetime | None:
    """The next reset after ``now`` for a period that was due at ``due`` (skips idle periods).

    Rolling periods stay on their original grid: due + k × duration.
    """
    if duration_sec:
        periods = int((now - due).total_seconds() // duration_sec) + 1
        return due + timedelta(seconds=duration_sec * periods)
    return next_reset(now, duration_sec=None, alignment=alignment)
