"""What every management request's input must satisfy before a service sees it.

A body is a JSON object: an absent one reads as ``{}`` (``optional_body``), and one sent
without a JSON Content-Type is parsed all the same, so the only body errors a client sees
are "not valid JSON" and "not a JSON object". PostgreSQL cannot store a NUL character in
text, and a NUL in a lookup fails the query rather than finding nothing, so one in a body,
a path or a query is refused up front with a 400 on both databases.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Body
from pydantic import BaseModel, model_validator
from pydantic_core import PydanticCustomError
from starlette.requests import Request

from otari_gateway.errors import InvalidRequest

_NUL = "\x00"


def not_json(reason: str, position: int | None) -> str:
    """The message for a body the JSON parser refused, at the character it stopped on."""
    where = "" if position is None else f" at character {position}"
    return f"the request body is not valid JSON: {reason}{where}"


def optional_body() -> Any:
    """A body parameter whose absence means ``{}``, validated like a sent one, so a model
    whose fields are all optional needs no body and one with a required field names it."""
    return Body(default_factory=dict, validate_default=True)


def _json_object(data: Any) -> dict[str, Any]:
    if isinstance(data, bytes):
        # FastAPI parses a body only when its Content-Type says JSON; one sent as text/plain,
        # with curl -d's form type or with none is still the client's JSON.
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PydanticCustomError(
                "body_not_json", "{message}", {"message": not_json(exc.msg, exc.pos)}
            ) from None
    if not isinstance(data, dict):
        raise PydanticCustomError("body_not_object", "the request body must be a JSON object")
    return data


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
    def _checked_object(cls, data: Any) -> dict[str, Any]:
        body = _json_object(data)
        if _has_nul(body):
            raise ValueError("text fields must not contain NUL characters")
        return body


async def no_nul_in_url(request: Request) -> None:
    """Router dependency: a NUL in a path segment or query value is a 400, not a 500."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and _NUL in value:
            raise InvalidRequest(f"'{name}' must not contain NUL characters", param=name)
