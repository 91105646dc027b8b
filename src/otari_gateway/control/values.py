"""Small value types the control services share: the "field not sent" marker, pages,
UTC normalisation and the ``allowed_models`` grammar.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum

from otari_gateway.errors import InvalidRequest


class Unset(Enum):
    """A PATCH field the client left out, as opposed to one it sent as ``null``."""

    UNSET = "UNSET"


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class Page:
    skip: int = 0
    limit: int = 100


def new_id() -> str:
    return str(uuid.uuid4())


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime from a client is read as UTC (the API's rule)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-05:00 is a valid datetime whose UTC instant is not.
        raise InvalidRequest(f"{moment.isoformat()} is out of the supported range") from None


def future_expiry(moment: datetime | None, now: datetime) -> datetime | None:
    if moment is None:
        return None
    expiry = as_utc(moment)
    if expiry <= now:
        raise InvalidRequest("expires_at must be in the future", param="expires_at")
    return expiry


def _valid_entry(entry: str) -> bool:
    instance, colon, model = entry.partition(":")
    if not colon or not instance or not model or any(c.isspace() for c in entry):
        return False
    # A wildcard is only a trailing one: "inst:*" or "inst:prefix*".
    return "*" not in model[:-1]


def check_allowed_models(models: Sequence[str] | None) -> list[str] | None:
    """``None`` (any model), ``[]`` (none) or a list of ``inst:model`` / ``inst:*`` /
    ``inst:prefix*`` entries; anything else is a 400 naming the entry.
    """
    if models is None:
        return None
    for entry in models:
        if not _valid_entry(entry):
            raise InvalidRequest(
                f"allowed_models entry '{entry}' is not 'instance:model', 'instance:*' "
                "or 'instance:prefix*'",
                param="allowed_models",
            )
    return list(dict.fromkeys(models))


# Storage bounds: ``Money`` is NUMERIC(20, 6) (int64 micro-dollars on SQLite) and counters
# are 32-bit INTEGER columns, so larger values are refused as a 400, not a database error.
# A user id is addressed in URL paths (/v1/users/{user_id}), where "/" cannot appear, and
# stored in 255-character columns that PostgreSQL keeps free of NUL.
USER_ID_PATTERN = r"^[^/\x00]{1,255}$"
USER_ID_RULE = "1-255 characters, without '/' or NUL"

MAX_USD = Decimal(10**12)
MAX_INT = 2**31 - 1
