"""A gateway killed mid-load (SIGKILL: no shutdown at all) strands no budget for good.

Its requests held money through budget leases. Those lease rows stop being renewed when
the process dies, and another gateway on the same database closes them once their TTL has
passed, so the user's and the key's ``reserved`` go back to 0 and the whole remaining
budget can be spent again. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import openai
from sqlalchemy import select

from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, BudgetLease, User
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.gateway_process import GatewayProcess

MASTER = "sk-crash-master"
TTL = 3.0
IN_FLIGHT = 6
BUDGET = 1000


def _config(fake: FakeOpenAI, database_url: str) -> dict[str, Any]:
    return {
        "master_key": MASTER,
        "database_url": database_url,
        "budget_lease_ttl_seconds": TTL,
        "providers": {"openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"}},
        "pricing": {
            "openai:gpt-4o-mini": {
                "input_price_per_million": 1_000_000,
                "output_price_per_million": 2_000_000,
            }
        },
    }


async def _ledger(database_url: str) -> tuple[Decimal, Decimal, int]:
    db = Database(database_url)
    try:
        async with db.session() as session:
            user = await session.get(User, "crash")
            key = (await session.execute(select(ApiKey))).scalar_one()
            leases = (await session.execute(select(BudgetLease))).scalars().all()
            assert user is not None
            return user.reserved, key.reserved, len(leases)
    finally:
        await db.aclose()


def _fire(base_url: str, key: str) -> None:
    """Requests that will never be answered: their gateway dies under them."""

    async def one() -> None:
        async with openai.AsyncOpenAI(
            api_key=key, base_url=base_url + "/v1", max_retries=0, timeout=30
        ) as client:
            with contextlib.suppress(openai.APIConnectionError):
                await client.chat.completions.create(
                    model="openai:gpt-4o-mini",
                    messages=[{"role": "user", "content": "hello"}],
                    max_tokens=10,
                )

    async def all_of_them() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(IN_FLIGHT):
                group.start_soon(one)

    anyio.run(all_of_them)


def test_leases_of_a_killed_gateway_come_back(database_url: str, tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = GatewayProcess(_config(fake, database_url), tmp_path / "a")
        first.start()
        try:
            base = first.base_url
            budget = first.call("POST", "/v1/budgets", {"max_budget": BUDGET})
            first.call("POST", "/v1/users", {"user_id": "crash", "budget_id": budget["budget_id"]})
            key = first.call("POST", "/v1/keys", {"user_id": "crash", "max_budget": BUDGET})["key"]
            fake.delay_next(30, times=IN_FLIGHT)
            clients = threading.Thread(target=_fire, args=(base, key), daemon=True)
            clients.start()
            deadline = time.monotonic() + 10
            while len(fake.requests) < IN_FLIGHT and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(fake.requests) == IN_FLIGHT
        finally:
            first.kill()
        clients.join(timeout=10)
        user_reserved, key_reserved, leases = anyio.run(_ledger, database_url)
        # One lease per budget (user, key), opened once for all the concurrent requests.
        assert user_reserved > 0 and key_reserved > 0 and leases == 2

        second = GatewayProcess(_config(fake, database_url), tmp_path / "b")
        second.start()
        try:
            deadline = time.monotonic() + 4 * TTL
            while anyio.run(_ledger, database_url) != (0, 0, 0):
                assert time.monotonic() < deadline, anyio.run(_ledger, database_url)
                time.sleep(0.2)
            user = second.call("GET", "/v1/users/crash")
            assert (user["spend"], user["reserved"]) == (0, 0)
            # The whole budget is usable again: one request may hold all of it.
            fake.reset()
            with openai.OpenAI(
                api_key=key, base_url=second.base_url + "/v1", max_retries=0
            ) as client:
                # 8 input tokens at $1 ("hello" and the chat framing) and 495 output tokens
                # at $2: a worst case of $998 of the $1,000 budget.
                client.chat.completions.create(
                    model="openai:gpt-4o-mini",
                    messages=[{"role": "user", "content": "hello"}],
                    max_tokens=(BUDGET - 10) // 2,
                )
        finally:
            second.stop()
