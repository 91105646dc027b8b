"""SIGTERM under load loses no usage row, on SQLite and PostgreSQL, with one and two workers.

Each test starts two gateways on one fresh database (``workers=1`` and ``workers=2``, in
parallel to save start-up time), each in front of its own fake upstream whose replies take
a little while (a delay, and a slow stream). For each gateway in turn, ~40 requests are
started staggered (half JSON, half streams; master key, a unique ``user`` per request);
once the first ten are answered the gateway gets SIGTERM while the rest are in flight or
not yet sent. Graceful shutdown must then write every usage row it owes: the database is
read directly afterwards and every answered request has exactly one ``success`` row, every
request the upstream saw has a row, and each user's spend is the sum of their rows with
nothing left reserved.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from sqlalchemy import func, select

from otari_gateway.store.database import Database
from otari_gateway.store.models import UsageLog, User
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.gateway_process import GatewayProcess

MASTER = "sk-shutdown-master"
REQUESTS = 40
STAGGER = 0.03  # seconds between request starts: the load spans ~1.2 s
UPSTREAM_DELAY = 0.3  # every upstream answer waits this long, so requests overlap
STREAM_INTERVAL = 0.02
SIGNAL_AFTER = 10  # answered requests before SIGTERM
REQUEST_ID = "x-otari-request-id"
TEXT = "please count these words"
PRICE = {"input_price_per_million": 1_000_000, "output_price_per_million": 2_000_000}
# Start-up is mostly imports; with PYTHONDONTWRITEBYTECODE set in the environment, every
# worker compiles every module again. Bytecode cached outside the repository halves that.
FAST_IMPORTS = {
    "PYTHONDONTWRITEBYTECODE": "",
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "otari-test-pycache"),
}


@dataclass
class Load:
    """What the clients saw."""

    answered: dict[str, str] = field(default_factory=dict)  # request id -> user
    failures: list[str] = field(default_factory=list)
    started: int = 0
    in_flight_at_signal: int = -1


@dataclass
class Target:
    workers: int
    gateway: GatewayProcess
    fake: FakeOpenAI

    @property
    def prefix(self) -> str:
        return f"w{self.workers}-"


async def _one(client: openai.AsyncOpenAI, index: int, target: Target, load: Load) -> str:
    """One request; returns its request id when fully answered, raises otherwise."""
    user = f"{target.prefix}{index}"
    messages: Any = [{"role": "user", "content": TEXT}]
    if index % 2:
        async with client.chat.completions.with_streaming_response.create(
            model="openai:gpt-4o-mini", messages=messages, user=user, stream=True
        ) as response:
            request_id = response.headers[REQUEST_ID]
            text, finished = "", False
            async for chunk in await response.parse():
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finished = finished or chunk.choices[0].finish_reason == "stop"
        assert finished and text == "echo: " + TEXT, (finished, text)
        return request_id
    raw = await client.chat.completions.with_raw_response.create(
        model="openai:gpt-4o-mini", messages=messages, user=user
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "echo: " + TEXT
    return raw.headers[REQUEST_ID]


async def _load(target: Target) -> Load:
    load = Load()
    process = target.gateway._process
    assert process is not None

    async def request(client: openai.AsyncOpenAI, index: int) -> None:
        await anyio.sleep(index * STAGGER)
        load.started += 1
        try:
            request_id = await _one(client, index, target, load)
        except Exception as exc:
            load.failures.append(f"{index}: {type(exc).__name__}: {exc}")
            return
        load.answered[request_id] = f"{target.prefix}{index}"
        if len(load.answered) == SIGNAL_AFTER:
            load.in_flight_at_signal = load.started - len(load.answered) - len(load.failures)
            process.send_signal(signal.SIGTERM)

    async with (
        openai.AsyncOpenAI(
            api_key=MASTER,
            base_url=target.gateway.base_url + "/v1",
            max_retries=0,
            timeout=20,
        ) as client,
        anyio.create_task_group() as group,
    ):
        for index in range(REQUESTS):
            group.start_soon(request, client, index)
    return load


def _run_until_terminated(target: Target) -> Load:
    load = anyio.run(_load, target)
    process = target.gateway._process
    assert process is not None
    try:
        returncode = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"workers={target.workers}: gateway still running 30 s after SIGTERM")
    logs = target.gateway.logs()
    # uvicorn re-raises the SIGTERM it caught once its graceful shutdown is done.
    assert returncode in (0, -signal.SIGTERM), f"workers={target.workers}: exit {returncode}"
    completed = logs.count("Application shutdown complete")
    assert completed == target.workers, f"workers={target.workers}: unclean shutdown\n{logs}"
    assert "usage.write_failed" not in logs, logs[-3000:]
    assert len(load.answered) >= SIGNAL_AFTER, load.failures
    # The point of the test: SIGTERM arrived while requests were still being served.
    assert load.in_flight_at_signal >= 1, load
    return load


async def _read_database(url: str) -> tuple[int, list[Any], list[Any]]:
    db = Database(url)
    try:
        async with db.session() as session:
            count = await session.scalar(select(func.count()).select_from(UsageLog))
            rows = (
                await session.execute(
                    select(
                        UsageLog.id,
                        UsageLog.user_id,
                        UsageLog.status,
                        UsageLog.status_code,
                        UsageLog.cost,
                    )
                )
            ).all()
            users = (await session.execute(select(User.user_id, User.spend, User.reserved))).all()
    finally:
        await db.aclose()
    return int(count or 0), list(rows), list(users)


def _start_all(targets: list[Target]) -> None:
    errors: list[BaseException] = []

    def start(target: Target) -> None:
        try:
            target.gateway.start(timeout=60)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _check(target: Target, load: Load, rows: list[Any], users: list[Any]) -> None:
    workers = f"workers={target.workers}"
    mine = [row for row in rows if (row.user_id or "").startswith(target.prefix)]
    by_id = {row.id: row for row in mine}
    assert len(by_id) == len(mine), f"{workers}: duplicate usage ids"
    missing = [rid for rid in load.answered if rid not in by_id]
    assert not missing, f"{workers}: {len(missing)} answered requests have no usage row"
    for request_id, user in load.answered.items():
        row = by_id[request_id]
        assert (row.status, row.status_code, row.user_id) == ("success", 200, user), row
    assert len(mine) >= len(load.answered)
    # Every request the upstream saw was admitted, so it must have been settled too.
    upstream_calls = len(target.fake.requests)
    assert len(mine) >= upstream_calls, (
        f"{workers}: {upstream_calls} upstream calls, {len(mine)} rows"
    )
    for row in mine:
        assert row.status in ("success", "error"), row
        if row.id not in load.answered:
            assert row.status == "error" or row.status_code == 200, row
    costs: dict[str, Decimal] = {}
    for row in mine:
        costs[row.user_id] = costs.get(row.user_id, Decimal(0)) + row.cost
    for user in users:
        if not user.user_id.startswith(target.prefix):
            continue
        assert user.reserved == 0, f"{workers}: {user.user_id} still holds {user.reserved}"
        assert user.spend == costs.get(user.user_id, Decimal(0)), (
            f"{workers}: {user.user_id} spend {user.spend} != Σ rows {costs.get(user.user_id)}"
        )


def test_sigterm_under_load_loses_no_usage_row(database_url: str, tmp_path: Path) -> None:
    with (
        FakeOpenAI(stream_interval=STREAM_INTERVAL) as fake_one,
        FakeOpenAI(stream_interval=STREAM_INTERVAL) as fake_two,
    ):
        targets: list[Target] = []
        for workers, fake in ((1, fake_one), (2, fake_two)):
            fake.delay_next(UPSTREAM_DELAY, times=10 * REQUESTS)
            config = {
                "master_key": MASTER,
                "database_url": database_url,
                "auto_migrate": False,  # the fixture migrated it; two starters must not race
                "providers": {
                    "openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"}
                },
                "pricing": {"openai:gpt-4o-mini": PRICE},
            }
            workdir = tmp_path / f"workers-{workers}"
            workdir.mkdir()
            targets.append(
                Target(
                    workers,
                    GatewayProcess(config, workdir, workers=workers, env=FAST_IMPORTS),
                    fake,
                )
            )
        try:
            _start_all(targets)
            loads = [_run_until_terminated(target) for target in targets]
        finally:
            for target in targets:
                target.gateway.stop()
        count, rows, users = anyio.run(_read_database, database_url)
    assert count == len(rows)
    assert len({row.id for row in rows}) == count, "duplicate usage ids"
    for target, load in zip(targets, loads, strict=True):
        _check(target, load, rows, users)
