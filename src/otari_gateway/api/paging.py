"""The ``skip`` and ``limit`` query parameters every management list takes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

# The largest offset both databases take as a bound parameter (SQLite's INTEGER is 64-bit).
MAX_SKIP = 2**63 - 1

Skip = Annotated[int, Query(ge=0, le=MAX_SKIP, description="Rows to skip")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows to return (1-1000)")]
