"""Budgets under a concurrent burst through the real server with two workers.

The design's bound (billing/ledger.py): spend ≤ max_budget + Σ in-flight (actual − held)⁺.
Here every request sets max_tokens and the input estimate covers the fake's word count, so
each hold covers its cost and spend must never exceed the budget; the recorded spend must
equal the sum of the usage rows, to the micro-dollar, and holds must drain to zero.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import anyio
import openai

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.gateway_process import GatewayProcess

MASTER = "sk-budget-master"
COST_PER_REQUEST = Decimal(8)  # 2 input tokens × $1 + 3 output tokens × $2 (see the prices)
REQUESTS_AFFORDED = 10
BURST = 5 * REQUESTS_AFFORDED


async def _burst(base_url: str, key: str) -> tuple[int, int]:
    succeeded = refused = 0
    messages: set[str] = set()
    async with openai.AsyncOpenAI(api_key=key, base_url=base_url + "/v1", max_retries=0) as client:

        async def one() -> None:
            nonlocal succeeded, refused
            try:
                await client.chat.completions.create(
                    model="openai:gpt-4o-mini",
                    messages=[{"role": "user", "content": "hello world"}],
                    max_tokens=10,
                )
                succeeded += 1
            except openai.PermissionDeniedError as exc:
                messages.add(exc.message)
                refused += 1

        async with anyio.create_task_group() as group:
            for _ in range(BURST):
                group.start_soon(one)
    assert messages <= {"Error code: 403 - User 'burst' has exceeded budget limit"}
    return succeeded, refused


def test_burst_never_overspends_and_spend_equals_rows(database_url: str, tmp_path: Path) -> None:
    budget_limit = COST_PER_REQUEST * REQUESTS_AFFORDED
    with FakeOpenAI() as fake:
        config = {
            "master_key": MASTER,
            "database_url": database_url,
            "providers": {"openai": {"api_key": fake.api_key, "api_base": fake.base_url + "/v1"}},
            "pricing": {
                "openai:gpt-4o-mini": {
                    "input_price_per_million": 1_000_000,
                    "output_price_per_million": 2_000_000,
                }
            },
        }
        gateway = GatewayProcess(config, tmp_path, workers=2)
        gateway.start()
        try:
            base = gateway.base_url
            budget = gateway.call("POST", "/v1/budgets", {"max_budget": str(budget_limit)})
            gateway.call(
                "POST", "/v1/users", {"user_id": "burst", "budget_id": budget["budget_id"]}
            )
            key = gateway.call("POST", "/v1/keys", {"user_id": "burst"})["key"]
            succeeded, refused = anyio.run(_burst, base, key)
            assert succeeded + refused == BURST
            assert succeeded >= 1
            deadline = time.monotonic() + 3
            while True:
                # Rows first: a row and its charge commit together, so once every row is
                # seen the user read after them carries every charge. (The other order can
                # read the user just before the last batch commits and its row just after.)
                rows = gateway.call("GET", "/v1/usage?user_id=burst&limit=1000")
                user = gateway.call("GET", "/v1/users/burst")
                written = len([row for row in rows if row["status"] == "success"])
                settled = Decimal(str(user["reserved"])) == 0 and written == succeeded
                if settled or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            gateway.stop()
    spend = Decimal(str(user["spend"]))
    assert Decimal(str(user["reserved"])) == 0
    assert spend <= budget_limit
    assert spend == sum(Decimal(str(row["cost"])) for row in rows)
    assert len([row for row in rows if row["status"] == "success"]) == succeeded
    assert spend == COST_PER_REQUEST * succeeded
