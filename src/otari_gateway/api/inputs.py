"""What every management request's input must satisfy before a service sees it.

PostgreSQL cannot store a NUL character in text, and a NUL in a lookup fails the query
rather than finding nothing, so one in a body, a path or a query is refused up front with a
400 on both databases.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator
from starlette.requests import Request

from otari_gateway.errors import InvalidRequest

_NUL = "\x00"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return _NUL in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class ManagementInput(BaseModel):
    """Base of the management API's request bodies."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _has_nul(data):
            raise ValueError("text fields must not contain NUL characters")
        return data


async def no_nul_in_url(request: Request) -> None:
    """Router dependency: a NUL in a path segment or query value is a 400, not a 500."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and _NUL in value:
            raise InvalidRequest(f"'{name}' must not contain NUL characters", param=name)
