"""A batch input file (JSONL): checked line by line, rewritten for its upstream.

Every line is ``{"custom_id", "method", "url", "body": {"model", ...}}``; ``body.model`` is a
gateway selector (``instance:model``, ``instance/model`` or an alias). All lines must name
one OpenAI-wire instance and one model — OpenAI accepts one model per batch file, and the
batch is billed at that model's price — and the upstream gets each line with the bare
model. A line that breaks a rule is refused with its number, before anything is uploaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from otari_gateway.errors import InvalidRequest
from otari_gateway.pipeline.routing import Target
from otari_gateway.providers.base import Wire


@dataclass(frozen=True, slots=True)
class BatchInput:
    target: Target
    # The model as the first line wrote it (what ``allowed_models`` is checked against).
    requested: str
    data: bytes


def _refused(number: int, reason: str) -> InvalidRequest:
    return InvalidRequest(
        f"line {number} of the batch file {reason}", param="file", code="invalid_batch_line"
    )


def _line(number: int, raw: bytes) -> tuple[dict[str, Any], dict[str, Any], str]:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _refused(number, "is not valid JSON") from None
    body = line.get("body") if isinstance(line, dict) else None
    model = body.get("model") if isinstance(body, dict) else None
    if not isinstance(line, dict) or not isinstance(body, dict):
        raise _refused(number, "is not a JSON object with a 'body' object")
    if not isinstance(model, str) or not model:
        raise _refused(number, "has no 'body.model' naming '<provider>:<model>'")
    return line, body, model


def read_batch_input(data: bytes, resolve: Callable[[str], Target]) -> BatchInput:
    """Check every line and rewrite its model to the bare one (blank lines are dropped)."""
    first: tuple[int, Target, str] | None = None
    rewritten: list[bytes] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        line, body, model = _line(number, raw)
        try:
            target = resolve(model)
        except InvalidRequest as exc:
            raise _refused(number, f"names an unknown model: {exc.message}") from None
        if target.provider.capabilities.wire is not Wire.OPENAI:
            raise _refused(
                number, f"names provider '{target.instance}', which has no OpenAI Batch API"
            )
        if first is None:
            first = (number, target, model)
        elif target.instance != first[1].instance:
            raise _refused(
                number,
                f"names provider '{target.instance}' but line {first[0]} names "
                f"'{first[1].instance}': a batch file goes to one provider",
            )
        elif target.model != first[1].model:
            raise _refused(
                number,
                f"names model '{target.model}' but line {first[0]} names '{first[1].model}': "
                "a batch file holds requests for one model",
            )
        rewritten.append(orjson.dumps({**line, "body": {**body, "model": target.model}}))
    if first is None:
        raise InvalidRequest("the batch file holds no requests", param="file")
    return BatchInput(first[1], first[2], b"\n".join(rewritten) + b"\n")
