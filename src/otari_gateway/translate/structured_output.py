"""OpenAI structured outputs (``response_format``) on Anthropic, which has no such field.

A JSON answer is asked for the robust way: one tool whose ``input_schema`` is the wanted
schema, forced with ``tool_choice``, so Anthropic returns the object as that tool's input,
checked against the schema, rather than as text the model may wrap in prose or fences.
The tool's input then comes back as the message ``content``, a JSON string, with
``finish_reason: stop``, which is how OpenAI answers; streamed, its ``input_json_delta``
fragments are the content deltas. The client's own tools cannot be sent beside it: an
answer could not say whether a call was the client's or the format's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard

import orjson

from otari_gateway.translate.errors import TranslationError

_JSON_FORMATS = frozenset({"json_schema", "json_object"})
# Anthropic's rule for tool names; OpenAI's for schema names is the same.
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# The tool's name when the format names none (json_object, or a nameless schema).
DEFAULT_TOOL_NAME = "json_response"
_DESCRIPTION = "Give your answer to the user's request as this tool's input."


def wants_json(response_format: Any) -> TypeGuard[Mapping[str, Any]]:
    """Whether a Chat ``response_format`` (or a Responses ``text.format``) asks for JSON."""
    return isinstance(response_format, Mapping) and response_format.get("type") in _JSON_FORMATS


def json_tool(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Anthropic tool standing for a Chat body's ``response_format``; None when the body
    asks for no JSON."""
    response_format = body.get("response_format")
    if not wants_json(response_format):
        return None
    if body.get("tools"):
        raise TranslationError(
            "response_format together with tools is not supported for this model's provider: "
            "send one or the other"
        )
    if response_format["type"] == "json_object":
        return _tool(DEFAULT_TOOL_NAME, {"type": "object"}, None)
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise TranslationError("response_format.json_schema must be an object")
    schema = spec.get("schema") or {}
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise TranslationError(
            "response_format.json_schema.schema must describe an object for this model's provider"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        name = DEFAULT_TOOL_NAME
    return _tool(name, {**schema, "type": "object"}, spec.get("description"))


def _tool(name: str, schema: dict[str, Any], description: Any) -> dict[str, Any]:
    text = f"{description}\n\n{_DESCRIPTION}" if isinstance(description, str) else _DESCRIPTION
    return {"name": name, "description": text, "input_schema": schema}


def forced(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The ``tool_choice`` that makes Anthropic answer with ``tool``."""
    return {"type": "tool", "name": tool["name"]}


def json_content(blocks: Any) -> str | None:
    """The answer of a forced JSON tool: its input as a JSON string (None without one)."""
    for block in blocks if isinstance(blocks, list) else []:
        if isinstance(block, Mapping) and block.get("type") == "tool_use":
            return orjson.dumps(block.get("input") or {}).decode()
    return None
