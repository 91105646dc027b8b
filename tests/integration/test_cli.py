"""``otari serve``: several workers on one port, and start-up refusals that say why."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import openai
import orjson
import yaml

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.gateway_process import GatewayProcess

MASTER = "sk-cli-master"


def _config(fake: FakeOpenAI, **settings: object) -> dict[str, object]:
    """The master key and one OpenAI instance in front of ``fake``, plus ``settings``."""
    instance = {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"}
    return {"master_key": MASTER, "providers": {"openai": instance}, **settings}


def test_two_workers_share_one_port(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        gateway = GatewayProcess(_config(fake), tmp_path, workers=2)
        gateway.start()
        try:
            with openai.OpenAI(
                api_key=MASTER, base_url=gateway.base_url + "/v1", max_retries=0
            ) as client:
                for index in range(10):
                    reply = client.chat.completions.create(
                        model="openai:gpt-4o-mini",
                        messages=[{"role": "user", "content": f"n{index}"}],
                        user="cli",
                    )
                    assert reply.choices[0].message.content == f"echo: n{index}"
            assert _worker_pids(gateway, expected=2) == 2
        finally:
            gateway.stop()


def _worker_pids(gateway: GatewayProcess, *, expected: int) -> int:
    """Workers start one after another; /health answers as soon as the first is up."""
    deadline = time.monotonic() + 20
    while True:
        pids = set(re.findall(r"Started server process \[(\d+)\]", gateway.logs()))
        if len(pids) >= expected or time.monotonic() > deadline:
            return len(pids)
        time.sleep(0.1)


def _serve(
    tmp_path: Path, config: dict[str, object], *options: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    command = [sys.executable, "-m", "otari_gateway", "serve", "--config", str(path)]
    return subprocess.run(
        [*command, "--port", "1", *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unset_variable_stops_startup_naming_it(tmp_path: Path) -> None:
    result = _serve(tmp_path, {"master_key": "${OTARI_TEST_SURELY_UNSET}"})
    assert result.returncode != 0
    assert "OTARI_TEST_SURELY_UNSET" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_value_stops_startup_naming_field(tmp_path: Path) -> None:
    result = _serve(tmp_path, {"providers": {"openai": {"timeout": "soon"}}})
    assert result.returncode != 0
    assert "providers.openai.timeout" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_alias_stops_startup_once_before_any_worker(tmp_path: Path) -> None:
    config = {
        "database_url": f"sqlite:///{tmp_path / 'otari.db'}",
        "providers": {"openai": {"api_key": "sk-x"}},
        "aliases": {"fast": "nope:gpt"},
    }
    result = _serve(tmp_path, config, "--workers", "2")
    assert result.returncode != 0
    assert "aliases.fast" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_log_line_is_json_and_names_the_request(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        config = _config(fake, log_level="debug", made_up_setting=1)
        gateway = GatewayProcess(config, tmp_path, workers=2)
        gateway.start()
        try:
            with openai.OpenAI(
                api_key=MASTER, base_url=gateway.base_url + "/v1", max_retries=0
            ) as client:
                try:
                    client.chat.completions.create(
                        model="openai:gpt-4o-mini",
                        messages=[{"role": "user", "content": "a secret prompt"}],
                        extra_query={"api_key": "QUERY-CANARY"},
                    )
                except openai.BadRequestError as exc:
                    request_id = exc.response.headers["x-otari-request-id"]
        finally:
            gateway.stop()
    lines = [orjson.loads(line) for line in gateway.logs().splitlines() if line.strip()]
    refused = [line for line in lines if line["event"] == "request.refused"]
    assert [(line["request_id"], line["path"]) for line in refused] == [
        (request_id, "/v1/chat/completions")
    ]
    assert any(line.get("logger") == "uvicorn.access" for line in lines)
    text = gateway.logs()
    for secret in ("QUERY-CANARY", MASTER, fake.api_key, "a secret prompt"):
        assert secret not in text
    # Warned once, by the command, not again by each process it starts.
    assert sum(line["event"] == "config.unknown_keys" for line in lines) == 1


def test_requests_are_not_logged_one_by_one_below_debug(tmp_path: Path) -> None:
    gateway = GatewayProcess({"master_key": MASTER}, tmp_path)
    gateway.start()
    try:
        for _ in range(3):
            gateway.call("GET", "/v1/models")
    finally:
        gateway.stop()
    assert "uvicorn.access" not in gateway.logs()
