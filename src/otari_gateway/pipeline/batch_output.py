"""A finished batch's usage summed from its output file (JSONL), for batches whose object
reports none.

OpenAI's batch object carries a ``usage`` total, but older batches and other
OpenAI-compatible batch APIs leave it out, while their output file still holds, per
answered request, ``{"custom_id", "response": {"status_code", "body"}, "error"}`` with the
endpoint's own ``usage`` in ``body``. A cancelled or expired batch's output file holds only
the requests that ran, so the sum is what the provider bills.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import orjson

from otari_gateway.translate.usage import usage_from_chat, usage_from_responses
from otari_gateway.usage import Usage


def output_usage(data: bytes, endpoint: str) -> Usage:
    """The summed usage of the answered (status 200) requests; unreadable lines count 0."""
    read = usage_from_responses if endpoint == "/v1/responses" else usage_from_chat
    total = Usage()
    for raw in data.splitlines():
        usage = _line_usage(raw)
        if usage is not None:
            total = _add(total, read(usage))
    return total


def _line_usage(raw: bytes) -> Mapping[str, Any] | None:
    try:
        line = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        return None
    response = line.get("response") if isinstance(line, dict) else None
    if not isinstance(response, dict) or response.get("status_code") != 200:
        return None
    body = response.get("body")
    usage = body.get("usage") if isinstance(body, dict) else None
    return usage if isinstance(usage, dict) else None


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(Usage)})
