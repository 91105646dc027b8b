"""A batch's usage summed from its output file."""

from __future__ import annotations

from typing import Any

import orjson

from otari_gateway.pipeline.batch_output import output_usage
from otari_gateway.usage import Usage


def _line(status: int, usage: dict[str, Any] | None) -> bytes:
    body: dict[str, Any] = {"object": "chat.completion"}
    if usage is not None:
        body["usage"] = usage
    response = {"status_code": status, "request_id": "r", "body": body}
    return orjson.dumps({"id": "batch_req_1", "custom_id": "c", "response": response})


CHAT = {
    "prompt_tokens": 10,
    "completion_tokens": 4,
    "prompt_tokens_details": {"cached_tokens": 2},
    "completion_tokens_details": {"reasoning_tokens": 1},
}


def test_answered_requests_are_summed_and_the_rest_count_nothing() -> None:
    failed = orjson.dumps({"custom_id": "d", "response": None, "error": {"code": "x"}})
    data = b"\n".join(
        [
            _line(200, CHAT),
            b"",
            _line(200, CHAT),
            _line(400, CHAT),
            _line(200, None),
            failed,
            b"{not json",
        ]
    )
    assert output_usage(data + b"\n", "/v1/chat/completions") == Usage(
        prompt_tokens=20, completion_tokens=8, cache_read_tokens=4, reasoning_tokens=2
    )


def test_responses_batches_read_the_responses_usage_shape() -> None:
    usage = {"input_tokens": 7, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 1}}
    data = _line(200, usage) + b"\n" + _line(200, usage)
    assert output_usage(data, "/v1/responses") == Usage(
        prompt_tokens=14, completion_tokens=6, cache_read_tokens=2
    )
