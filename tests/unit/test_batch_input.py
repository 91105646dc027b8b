"""Batch input files: every line checked, one instance and one model, bare models out."""

from __future__ import annotations

import orjson
import pytest

from otari_gateway.config import ProviderConfig
from otari_gateway.errors import InvalidRequest
from otari_gateway.pipeline.batch_input import read_batch_input
from otari_gateway.pipeline.routing import Router
from otari_gateway.providers.anthropic import AnthropicProvider
from otari_gateway.providers.openai_compat import OpenAICompatProvider

CONFIG = ProviderConfig()
ROUTER = Router(
    {
        "openai": OpenAICompatProvider("openai", CONFIG, "sk-a"),
        "local": OpenAICompatProvider("local", CONFIG, None),
        "claude": AnthropicProvider("claude", CONFIG, "sk-b"),
    },
    {"fast": "openai:gpt-4o-mini"},
)


def _line(model: object, custom_id: str = "r") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/x", "body": body})


def test_models_are_rewritten_and_everything_else_kept() -> None:
    data = _line("openai:gpt-4o-mini", "a") + b"\r\n\n" + _line("fast", "b") + b"\n"
    read = read_batch_input(data, ROUTER.resolve)
    assert (read.target.instance, read.target.model, read.requested) == (
        "openai",
        "gpt-4o-mini",
        "openai:gpt-4o-mini",
    )
    lines = [orjson.loads(line) for line in read.data.splitlines()]
    assert [line["body"]["model"] for line in lines] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert [line["custom_id"] for line in lines] == ["a", "b"]
    assert lines[0]["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert read.data.endswith(b"}\n")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_line("openai:m") + b"\n" + _line("local:m"), "line 2 of the batch file names provider"),
        (_line("openai:m") + b"\n" + _line("openai:n"), "line 2 of the batch file names model"),
        (_line("openai:m") + b"\n[1, 2", "line 2 of the batch file is not valid JSON"),
        (b"[1]", "line 1 of the batch file is not a JSON object"),
        (_line(7), "line 1 of the batch file has no 'body.model'"),
        (_line("elsewhere:m"), "line 1 of the batch file names an unknown model"),
        (_line("claude:m"), "which has no OpenAI Batch API"),
        (b" \n", "holds no requests"),
    ],
)
def test_bad_lines_are_refused_with_their_number(data: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        read_batch_input(data, ROUTER.resolve)
    assert message in refused.value.message
