"""The gateway starts and serves without a provider's optional SDK, and says what to install.

The test environment has every SDK the any-llm tests need, so the gateway here runs with
``boto3``/``botocore`` made unimportable: a ``sitecustomize`` on its ``PYTHONPATH`` refuses
them exactly as an interpreter without them would (``ModuleNotFoundError``), which is what a
plain ``pip install otari-gateway`` leaves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import MASTER_KEY, create_key
from tests.integration.gateway_process import GatewayProcess

_BLOCKER = '''
import sys

class _NotInstalled:
    """Behave as if these distributions were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"boto3", "botocore"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
'''


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayProcess, FakeOpenAI]]:
    workdir: Path = tmp_path_factory.mktemp("no-extras")
    site = workdir / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_BLOCKER, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    with FakeOpenAI() as fake:
        config = {
            "master_key": MASTER_KEY,
            "require_pricing": False,
            "providers": {
                "bedrock": {"region_name": "us-east-1", "aws_access_key_id": "AKIAUNUSED"},
                "openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"},
            },
        }
        process = GatewayProcess(config, workdir, env={"PYTHONPATH": path})
        process.start()
        try:
            yield process, fake
        finally:
            process.stop()


def _client(process: GatewayProcess) -> openai.OpenAI:
    key = str(create_key(process.base_url, user_id="no-extras")["key"])
    return openai.OpenAI(base_url=process.base_url + "/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize("stream", [False, True])
def test_missing_sdk_is_a_400_naming_the_extra(
    gateway: tuple[GatewayProcess, FakeOpenAI], stream: bool
) -> None:
    process, _ = gateway
    with _client(process) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="bedrock:anthropic.claude-3-haiku-20240307-v1:0",
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert "pip install 'otari-gateway[bedrock]'" in error["message"]
    assert error["code"] == "provider_not_installed"


def test_other_providers_still_serve(gateway: tuple[GatewayProcess, FakeOpenAI]) -> None:
    process, _ = gateway
    with _client(process) as client:
        reply = client.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.choices[0].message.content == "echo: hi"
    assert "provider.sdk_missing" in process.logs()
