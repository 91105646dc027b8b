"""SIGTERM under load loses no usage row, on SQLite and PostgreSQL, with one and two workers.

Each test starts two gateways on one fresh database (``workers=1`` and ``workers=2``, in
parallel to save start-up time), each in front of its own fake upstream whose replies take
a little while (a delay, and a slow stream). Each gateway gets its own users, all in a
budget group and with per-key budgets, so every request holds money. For each gateway in
turn, ~40 requests are started staggered (half JSON, half streams, spread over the users'
virtual keys); once the first ten are answered the gateway gets SIGTERM while the rest are
in flight or not yet sent. Graceful shutdown must then write every usage row it owes: the
database is read directly afterwards and every answered request has exactly one ``success``
row, every request the upstream saw has a row, and each user's and key's spend is the sum
of their rows with nothing left reserved.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import urllib.request
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import openai
import orjson
import pytest
from sqlalchemy import func, select

from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, UsageLog, User
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.gateway_process import GatewayProcess

MASTER = "sk-shutdown-master"
REQUESTS = 40
USERS = 4  # per gateway; request i uses user (and key) i % USERS
STAGGER = 0.03  # seconds between request starts: the load spans ~1.2 s
UPSTREAM_DELAY = 0.3  # every upstream answer waits this long, so requests overlap
STREAM_INTERVAL = 0.02
SIGNAL_AFTER = 10  # answered requests before SIGTERM
REQUEST_ID = "x-otari-request-id"
TEXT = "please count these words"
PRICE = {"input_price_per_million": 1_000_000, "output_price_per_million": 2_000_000}
GENEROUS = 1_000_000  # USD: budgets that never refuse, but make every request hold money
# Start-up is mostly imports; with PYTHONDONTWRITEBYTECODE set in the environment, every
# worker compiles every module again. Bytecode cached outside the repository halves that.
FAST_IMPORTS = {
    "PYTHONDONTWRITEBYTECODE": "",
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "otari-test-pycache"),
}


@dataclass(frozen=True)
class Caller:
    user_id: str
    key_id: str
    key: str


@dataclass
class Load:
    """What the clients saw."""

    answered: dict[str, Caller] = field(default_factory=dict)  # request id -> caller
    failures: list[str] = field(default_factory=list)
    started: int = 0
    in_flight_at_signal: int = -1


@dataclass
class Target:
    workers: int
    gateway: GatewayProcess
    fake: FakeOpenAI
    callers: list[Caller] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"w{self.workers}-"

    def call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.gateway.base_url + path,
            data=orjson.dumps(body),
            headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return orjson.loads(response.read())

    def make_callers(self) -> None:
        budget = self.call("POST", "/v1/budgets", {"max_budget": GENEROUS})
        for number in range(USERS):
            user_id = f"{self.prefix}{number}"
            self.call("POST", "/v1/users", {"user_id": user_id, "budget_id": budget["budget_id"]})
            key = self.call("POST", "/v1/keys", {"user_id": user_id, "max_budget": GENEROUS})
            self.callers.append(Caller(user_id, key["id"], key["key"]))


async def _one(client: openai.AsyncOpenAI, index: int) -> str:
    """One request; returns its request id when fully answered, raises otherwise."""
    messages: Any = [{"role": "user", "content": TEXT}]
    if index % 2:
        async with client.chat.completions.with_streaming_response.create(
            model="openai:gpt-4o-mini", messages=messages, stream=True
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
        model="openai:gpt-4o-mini", messages=messages
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
            request_id = await _one(client, index)
        except Exception as exc:
            load.failures.append(f"{index}: {type(exc).__name__}: {exc}")
            return
        load.answered[request_id] = target.callers[index % USERS]
        if len(load.answered) == SIGNAL_AFTER:
            load.in_flight_at_signal = load.started - len(load.answered) - len(load.failures)
            process.send_signal(signal.SIGTERM)

    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                openai.AsyncOpenAI(
                    api_key=caller.key,
                    base_url=target.gateway.base_url + "/v1",
                    max_retries=0,
                    timeout=20,
                )
            )
            for caller in target.callers
        ]
        async with anyio.create_task_group() as group:
            for index in range(REQUESTS):
                group.start_soon(request, clients[index % USERS], index)
    return load


def _run_until_terminated(target: Target) -> Load:
    target.make_callers()
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


@dataclass
class Stored:
    count: int
    rows: list[Any]
    users: dict[str, Any]
    keys: dict[str, Any]


async def _read_database(url: str) -> Stored:
    db = Database(url)
    try:
        async with db.session() as session:
            count = await session.scalar(select(func.count()).select_from(UsageLog))
            rows = await session.execute(
                select(
                    UsageLog.id,
                    UsageLog.user_id,
                    UsageLog.api_key_id,
                    UsageLog.status,
                    UsageLog.status_code,
                    UsageLog.cost,
                )
            )
            users = await session.execute(select(User.user_id, User.spend, User.reserved))
            keys = await session.execute(select(ApiKey.id, ApiKey.spend, ApiKey.reserved))
            return Stored(
                int(count or 0),
                list(rows),
                {user.user_id: user for user in users},
                {key.id: key for key in keys},
            )
    finally:
        await db.aclose()


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


def _check(target: Target, load: Load, stored: Stored) -> None:
    workers = f"workers={target.workers}"
    mine = [row for row in stored.rows if (row.user_id or "").startswith(target.prefix)]
    by_id = {row.id: row for row in mine}
    assert len(by_id) == len(mine), f"{workers}: duplicate usage ids"
    missing = [request_id for request_id in load.answered if request_id not in by_id]
    assert not missing, f"{workers}: {len(missing)} answered requests have no usage row"
    for request_id, caller in load.answered.items():
        row = by_id[request_id]
        assert (row.status, row.status_code) == ("success", 200), row
        assert (row.user_id, row.api_key_id) == (caller.user_id, caller.key_id), row
    assert len(mine) >= len(load.answered)
    # Every request the upstream saw was admitted, so it must have been settled too.
    upstream_calls = len(target.fake.requests)
    assert len(mine) >= upstream_calls, f"{workers}: {upstream_calls} upstream calls, {mine}"
    for row in mine:
        assert row.status in ("success", "error"), row
        assert row.cost >= 0, row
    for caller in target.callers:
        user, key = stored.users[caller.user_id], stored.keys[caller.key_id]
        user_rows = [row.cost for row in mine if row.user_id == caller.user_id]
        key_rows = [row.cost for row in mine if row.api_key_id == caller.key_id]
        assert user.reserved == 0, f"{workers}: {caller.user_id} still holds {user.reserved}"
        assert key.reserved == 0, f"{workers}: key of {caller.user_id} holds {key.reserved}"
        assert user.spend == sum(user_rows, Decimal(0)), f"{workers}: {caller.user_id} spend"
        assert key.spend == sum(key_rows, Decimal(0)), f"{workers}: key of {caller.user_id}"


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
            gateway = GatewayProcess(config, workdir, workers=workers, env=FAST_IMPORTS)
            targets.append(Target(workers, gateway, fake))
        try:
            _start_all(targets)
            loads = [_run_until_terminated(target) for target in targets]
        finally:
            for target in targets:
                target.gateway.stop()
        stored = anyio.run(_read_database, database_url)
    assert stored.count == len(stored.rows)
    assert len({row.id for row in stored.rows}) == stored.count, "duplicate usage ids"
    for target, load in zip(targets, loads, strict=True):
        _check(target, load, stored)


def test_a_request_outliving_the_grace_period_is_still_recorded(tmp_path: Path) -> None:
    """Past ``shutdown_grace_seconds`` a JSON request is cancelled: its row is written."""
    with FakeOpenAI() as fake:
        config = {
            "master_key": MASTER,
            "database_url": f"sqlite:///{tmp_path / 'otari.db'}",
            "shutdown_grace_seconds": 1,
            "providers": {"openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"}},
            "pricing": {"openai:gpt-4o-mini": PRICE},
        }
        gateway = GatewayProcess(config, tmp_path, env=FAST_IMPORTS)
        gateway.start()
        fake.delay_next(30)
        client = openai.OpenAI(
            base_url=gateway.base_url + "/v1", api_key=MASTER, max_retries=0, timeout=30
        )
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                client.chat.completions.create(
                    model="openai:gpt-4o-mini",
                    messages=[{"role": "user", "content": TEXT}],
                    user="slow-user",
                )
            except BaseException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        while not fake.requests:
            threading.Event().wait(0.05)
        gateway.stop()
        caller.join(timeout=30)
        assert outcome, "the request should not have been answered"

    rows = anyio.run(_rows_of, f"sqlite:///{tmp_path / 'otari.db'}")
    assert [(row.user_id, row.status_code) for row in rows] == [("slow-user", 499)]
    assert "shutdown" in (rows[0].error_message or "")


async def _rows_of(url: str) -> list[UsageLog]:
    db = Database(url)
    try:
        async with db.session() as session:
            return list(await session.scalars(select(UsageLog)))
    finally:
        await db.aclose()
