"""Budgets under a concurrent burst of mixed requests and upstream faults, through the real
server, on SQLite and PostgreSQL.

A budget sized for ``AFFORDED`` requests is hit by about five times as many, the slow ones
all at once and the others over the next three seconds (``_plan`` says why): chat and
``/v1/messages`` (passthrough to the fake Anthropic and translated to the fake OpenAI),
JSON and streams, and requests whose upstream answers 500, 429 or 401, drops the stream
half-way, or is slow while its client leaves (a stream closed after its first event, a JSON
call abandoned once the upstream has it). Each fault has a fake upstream of its own, so
what a request meets is decided by its model, never by timing; only which requests the
budget refuses depends on timing, and every assertion allows exactly that.

The design's bound (``billing/ledger.py``): spend ≤ max_budget + Σ over in-flight requests
of (actual − held)⁺. Every request here sets ``max_tokens`` to exactly the output the fakes
produce ("echo: budget tNNN", 3 tokens) and the input estimate (tiktoken, or four
characters a token, plus 3 per message) is above the fakes' count of 2 words, so every hold
covers its cost and the bound is ``max_budget`` itself. The prices make a hold only a few
micro-dollars above its cost, so headroom counted twice shows up as spend above the budget,
and ``spend + reserved ≤ max_budget`` is sampled in the database during the burst.

After the burst: the recorded spend equals the sum of the usage rows to the micro-dollar
(each row's cost being its tokens at the price), there is exactly one row per request the
gateway received, with the status the client saw, ``reserved`` and the lease table are back
to 0 while the gateway still runs, the gateway never answered 500, and every error came in
its surface's envelope with the status API.md gives.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from sqlalchemy import select

from otari_gateway.store.database import Database
from otari_gateway.store.models import ApiKey, BudgetLease, User
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import FakeUpstream
from tests.integration.gateway_process import GatewayProcess

MASTER = "sk-faults-master"
REQUEST_ID = "x-otari-request-id"
MICRO = Decimal("0.000001")
MILLION = Decimal(1_000_000)
# Output dominates: a hold (≥ 6 input tokens at the estimate, 3 output) is then only
# micro-dollars above the cost of a success (2 input tokens, 3 output).
INPUT_PER_MILLION = Decimal("1.234567")
OUTPUT_PER_MILLION = Decimal(1_000_000)
MAX_TOKENS = 3  # "echo: budget tNNN": exactly what the fakes answer
PROMPT_WORDS, REPLY_WORDS = 2, 3
AFFORDED = 10
STREAM_INTERVAL = 0.25  # the slow fake's pace: its stream lasts ~2 s, the client leaves at once
STALL_SECONDS = 2.0  # the stalled fake's delay before answering a JSON call
FOREVER = 100_000  # fault repetitions: every request to a faulty fake meets its fault
ARRIVALS_SECONDS = 3.0  # the requests that are not slow arrive over this long (see _plan)
PLAN_SEED = 20261127
SETTLE_WITHIN = 10.0
SAMPLE_EVERY = 0.02
# Start-up is mostly imports: bytecode cached outside the repository halves it.
FAST_IMPORTS = {
    "PYTHONDONTWRITEBYTECODE": "",
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "otari-test-pycache"),
}

CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
GPT, CLAUDE = "gpt-4o-mini", "claude-sonnet-4-5"


def _cost(prompt_tokens: int, completion_tokens: int) -> Decimal:
    return (
        (prompt_tokens * INPUT_PER_MILLION + completion_tokens * OUTPUT_PER_MILLION) / MILLION
    ).quantize(MICRO)


COST = _cost(PROMPT_WORDS, REPLY_WORDS)


class Fate(Enum):
    """What the upstream does with a request the budget admits."""

    ANSWERS = "answers"
    FAILS = "fails"  # 500, or 401 for the gateway's credentials: 502 to the client
    THROTTLES = "throttles"  # 429 with Retry-After: 429 with it
    DROPS = "drops"  # the stream's connection is cut before its end
    CLIENT_CLOSES_STREAM = "client closes stream"  # slow stream; the client reads one event
    CLIENT_ABANDONS = "client abandons"  # slow JSON; the client leaves once it is upstream


@dataclass(frozen=True)
class Kind:
    path: str
    instance: str
    model: str
    stream: bool
    fate: Fate

    @property
    def selector(self) -> str:
        return f"{self.instance}:{self.model}"

    @property
    def anthropic_envelope(self) -> bool:
        return self.path == MESSAGES


# ~5 × AFFORDED requests; those that can cost money ask for about three budgets.
MIX: tuple[tuple[Kind, int], ...] = (
    (Kind(CHAT, "openai", GPT, False, Fate.ANSWERS), 7),
    (Kind(CHAT, "openai", GPT, True, Fate.ANSWERS), 7),
    (Kind(MESSAGES, "openai", GPT, False, Fate.ANSWERS), 3),
    (Kind(MESSAGES, "openai", GPT, True, Fate.ANSWERS), 3),
    (Kind(MESSAGES, "anthropic", CLAUDE, False, Fate.ANSWERS), 3),
    (Kind(MESSAGES, "anthropic", CLAUDE, True, Fate.ANSWERS), 3),
    (Kind(CHAT, "broken", GPT, False, Fate.FAILS), 3),
    (Kind(MESSAGES, "broken", GPT, True, Fate.FAILS), 2),
    (Kind(CHAT, "badkey", GPT, True, Fate.FAILS), 3),
    (Kind(CHAT, "throttled", GPT, False, Fate.THROTTLES), 3),
    (Kind(MESSAGES, "throttled_anthropic", CLAUDE, True, Fate.THROTTLES), 2),
    (Kind(CHAT, "dropping", GPT, True, Fate.DROPS), 3),
    (Kind(MESSAGES, "dropping_anthropic", CLAUDE, True, Fate.DROPS), 2),
    (Kind(CHAT, "slow", GPT, True, Fate.CLIENT_CLOSES_STREAM), 3),
    (Kind(MESSAGES, "slow_anthropic", CLAUDE, True, Fate.CLIENT_CLOSES_STREAM), 2),
    (Kind(CHAT, "stalled", GPT, False, Fate.CLIENT_ABANDONS), 3),
)


@dataclass
class Fakes:
    """One fake upstream per behaviour, so a request's fate follows from its model."""

    by_instance: dict[str, FakeUpstream]

    def provider_config(self) -> dict[str, dict[str, Any]]:
        providers: dict[str, dict[str, Any]] = {}
        for instance, fake in self.by_instance.items():
            anthropic = isinstance(fake, FakeAnthropic)
            providers[instance] = {
                "provider_type": "anthropic" if anthropic else "openai",
                "api_key": fake.api_key,
                "api_base": fake.base_url if anthropic else fake.base_url + "/v1",
            }
        providers["badkey"] = {**providers["openai"], "api_key": "sk-not-the-fakes-key"}
        return providers

    def forget_requests(self) -> None:
        """Start a burst with no recorded requests (its tags repeat earlier bursts')."""
        for fake in self.by_instance.values():
            fake.clear()

    def received(self, instance: str, tag: str) -> bool:
        needle = f'"budget {tag}"'.encode()
        return any(needle in request.body for request in self.by_instance[instance].requests)


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with contextlib.ExitStack() as stack:
        made: dict[str, FakeUpstream] = {
            "openai": FakeOpenAI(),
            "anthropic": FakeAnthropic(),
            "broken": FakeOpenAI(),
            "throttled": FakeOpenAI(),
            "throttled_anthropic": FakeAnthropic(),
            "dropping": FakeOpenAI(),
            "dropping_anthropic": FakeAnthropic(),
            "slow": FakeOpenAI(stream_interval=STREAM_INTERVAL),
            "slow_anthropic": FakeAnthropic(stream_interval=STREAM_INTERVAL),
            "stalled": FakeOpenAI(),
        }
        for fake in made.values():
            stack.enter_context(fake)
        made["broken"].fail_next(500, times=FOREVER)
        made["throttled"].fail_next(429, times=FOREVER)
        made["throttled_anthropic"].fail_next(429, times=FOREVER)
        # OpenAI: the role chunk and one word; Anthropic: message_start (input usage, 1
        # output token), content_block_start and ping.
        made["dropping"].drop_stream_next(2, times=FOREVER)
        made["dropping_anthropic"].drop_stream_next(3, times=FOREVER)
        made["stalled"].delay_next(STALL_SECONDS, times=FOREVER)
        yield Fakes(made)


def _config(fakes: Fakes, database_url: str) -> dict[str, Any]:
    providers = fakes.provider_config()
    price = {
        "input_price_per_million": str(INPUT_PER_MILLION),
        "output_price_per_million": str(OUTPUT_PER_MILLION),
    }
    return {
        "master_key": MASTER,
        "database_url": database_url,
        "discover_models": False,
        "providers": providers,
        "pricing": {
            f"{instance}:{CLAUDE if settings['provider_type'] == 'anthropic' else GPT}": price
            for instance, settings in providers.items()
        },
    }


@contextlib.contextmanager
def _gateways(
    fakes: Fakes, database_url: str, workdir: Path, *, processes: int, workers: int
) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    try:
        for number in range(processes):
            directory = workdir / f"gateway-{number}"
            directory.mkdir()
            gateway = GatewayProcess(
                _config(fakes, database_url), directory, workers=workers, env=FAST_IMPORTS
            )
            gateway.start()
            started.append(gateway)
        yield started
    finally:
        for gateway in started:
            gateway.stop()
    for gateway in started:
        logs = gateway.logs()
        for event in (
            "Traceback",
            "request.crashed",
            "stream.crashed",
            "settlement.failed",
            "write_failed",
        ):
            assert event not in logs, f"{event} in {gateway.log_path}"


# --------------------------------------------------------------------------- the burst


@dataclass(frozen=True)
class Caller:
    """A virtual key and what a budget refusal must say for it."""

    key: str
    user_id: str
    refusals: frozenset[str]


@dataclass
class Seen:
    """One request as its client saw it."""

    kind: Kind
    tag: str
    caller: Caller
    status: int | None = None  # None: the client left before any answer
    request_id: str | None = None
    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(f"{self.kind} {self.tag} ({self.status}): {what}")


def _body(kind: Kind, tag: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": kind.selector,
        "messages": [{"role": "user", "content": f"budget {tag}"}],
        "max_tokens": MAX_TOKENS,
    }
    if kind.stream:
        body["stream"] = True
    return body


def _check_error(seen: Seen, payload: Any, headers: Mapping[str, str]) -> None:
    """A refusal or an upstream failure: the status API.md gives, in the right envelope."""
    kind, status = seen.kind, seen.status
    messages: Collection[str] | None = None
    if status == 403:
        expected_type, messages = "permission_error", seen.caller.refusals
    elif status == 429 and kind.fate is Fate.THROTTLES:
        expected_type = "rate_limit_error"
        seen.expect(headers.get("Retry-After") == "1", "the upstream's Retry-After is kept")
    elif status == 502 and kind.fate is Fate.FAILS:
        expected_type = "api_error" if kind.anthropic_envelope else "upstream_error"
        if kind.instance == "badkey":
            messages = {"the provider 'badkey' rejected the gateway's credentials"}
    else:
        seen.expect(False, f"unexpected status: {payload}")
        return
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        seen.expect(False, f"an error envelope: {payload}")
        return
    if kind.anthropic_envelope:
        seen.expect(payload.get("type") == "error", f"Anthropic envelope: {payload}")
    elif status == 403:
        seen.expect(error.get("code") == "budget_exceeded", f"code: {payload}")
    seen.expect(error.get("type") == expected_type, f"error type: {payload}")
    if messages is not None:
        seen.expect(error.get("message") in messages, f"message: {payload}")


def _check_stream(seen: Seen, text: str) -> None:
    kind = seen.kind
    last = text.strip().split("\n\n")[-1]
    terminal = "event: message_stop" if kind.anthropic_envelope else "data: [DONE]"
    if kind.fate is Fate.ANSWERS:
        seen.expect(last.startswith(terminal), f"ends with {terminal}: {text}")
        seen.expect(f" {seen.tag}" in text, f"the streamed reply: {text}")
    elif kind.fate is Fate.DROPS:
        seen.expect(terminal not in text, f"no terminal event after a drop: {text}")
        error = "event: error" if kind.anthropic_envelope else 'data: {"error"'
        seen.expect(last.startswith(error), f"the stream ends with an error event: {text}")
    else:
        seen.expect(False, f"a complete stream: {text}")


async def _send(
    session: aiohttp.ClientSession,
    base_url: str,
    kind: Kind,
    tag: str,
    caller: Caller,
    fakes: Fakes,
) -> Seen:
    seen = Seen(kind, tag, caller)
    url = base_url + kind.path
    headers = {"Authorization": f"Bearer {caller.key}"}
    body = _body(kind, tag)
    if kind.fate is Fate.CLIENT_ABANDONS:
        return await _abandon(session, url, headers, body, seen, fakes)
    async with session.post(url, json=body, headers=headers) as response:
        seen.status = response.status
        seen.request_id = response.headers.get(REQUEST_ID)
        seen.expect(seen.request_id is not None, "the response names its request id")
        if response.status != 200:
            _check_error(seen, orjson.loads(await response.read()), response.headers)
        elif kind.fate is Fate.CLIENT_CLOSES_STREAM:
            first = await response.content.readany()
            seen.expect(first.startswith((b"data:", b"event:")), f"an event first: {first!r}")
            # Hang up with the stream half-way.
            response.close()
        elif kind.stream:
            _check_stream(seen, (await response.read()).decode())
        else:
            seen.expect(kind.fate is Fate.ANSWERS, "a 200 from a faulty upstream")
            payload = orjson.loads(await response.read())
            if kind.anthropic_envelope:
                text = payload["content"][0]["text"]
            else:
                text = payload["choices"][0]["message"]["content"]
            seen.expect(text == f"echo: budget {tag}", f"the reply: {payload}")
    return seen


async def _abandon(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    seen: Seen,
    fakes: Fakes,
) -> Seen:
    """Send a JSON request to the stalled upstream and hang up once the upstream has it
    (so the gateway has admitted it and must still record it), unless refused first."""
    async with anyio.create_task_group() as group:

        async def call() -> None:
            async with session.post(url, json=body, headers=headers) as response:
                seen.status = response.status
                seen.request_id = response.headers.get(REQUEST_ID)
                _check_error(seen, orjson.loads(await response.read()), response.headers)
            group.cancel_scope.cancel()

        async def hang_up_once_upstream() -> None:
            # The fake records requests on its own thread: nothing to await but time.
            while not fakes.received(seen.kind.instance, seen.tag):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            # Cancelling the call closes its connection.
            group.cancel_scope.cancel()

        group.start_soon(call)
        group.start_soon(hang_up_once_upstream)
    return seen


def _plan(callers: Sequence[Caller]) -> list[tuple[float, Kind, Caller]]:
    """When each request starts: the slow ones together at once, the others one after the
    other over ``ARRIVALS_SECONDS``, in a fixed shuffled order.

    Requests keep arriving while the slow ones end, after the budget has run out and leases
    went idle. That is when a lease can close while the cost of its last request is still
    queued for the usage writer; a burst sent all at once is settled (or refused) before
    then, and leaves no request to take headroom given back too early.
    """
    slow = (Fate.CLIENT_ABANDONS, Fate.CLIENT_CLOSES_STREAM)
    requests = [(kind, caller) for caller in callers for kind, count in MIX for _ in range(count)]
    random.Random(PLAN_SEED).shuffle(requests)
    first = [request for request in requests if request[0].fate in slow]
    others = [request for request in requests if request[0].fate not in slow]
    return [(0.0, kind, caller) for kind, caller in first] + [
        (ARRIVALS_SECONDS * number / len(others), kind, caller)
        for number, (kind, caller) in enumerate(others)
    ]


async def _burst(base_urls: Sequence[str], callers: Sequence[Caller], fakes: Fakes) -> list[Seen]:
    """Every kind of MIX for every caller, spread over the gateways (see ``_plan``)."""
    seen: list[Seen] = []
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one(number: int, start: float, kind: Kind, caller: Caller) -> None:
            await anyio.sleep(start)
            base_url = base_urls[number % len(base_urls)]
            seen.append(await _send(session, base_url, kind, f"t{number:03d}", caller, fakes))

        async with anyio.create_task_group() as group:
            for number, (start, kind, caller) in enumerate(_plan(callers)):
                group.start_soon(one, number, start, kind, caller)
    return seen


# --------------------------------------------------------------------------- the ledger


@dataclass(frozen=True)
class Ledger:
    """Spend and reserved of the users and keys under test, and the open leases."""

    users: dict[str, tuple[Decimal, Decimal]]
    keys: dict[str, tuple[Decimal, Decimal]]
    leases: int


async def _read_ledger(db: Database, user_ids: Sequence[str], key_ids: Sequence[str]) -> Ledger:
    async with db.session() as session:
        users = await session.execute(
            select(User.user_id, User.spend, User.reserved).where(User.user_id.in_(user_ids))
        )
        keys = await session.execute(
            select(ApiKey.id, ApiKey.spend, ApiKey.reserved).where(ApiKey.id.in_(key_ids))
        )
        leases = (await session.execute(select(BudgetLease.id))).scalars().all()
        return Ledger(
            {user_id: (spend, reserved) for user_id, spend, reserved in users.all()},
            {key_id: (spend, reserved) for key_id, spend, reserved in keys.all()},
            len(leases),
        )


@dataclass
class Limits:
    """The caps under test: user id or key id → max_budget."""

    users: dict[str, Decimal]
    keys: dict[str, Decimal] = field(default_factory=dict)


async def _burst_watching_commitments(
    database_url: str,
    base_urls: Sequence[str],
    callers: Sequence[Caller],
    fakes: Fakes,
    limits: Limits,
) -> tuple[list[Seen], list[str]]:
    """The burst, while the database is sampled for ``spend + reserved > max_budget``: the
    conditional take keeps that sum within the budget, so any excess is headroom given out
    twice."""
    excesses: list[str] = []
    db = Database(database_url)
    try:

        async def watch(done: anyio.Event) -> None:
            while not done.is_set():
                ledger = await _read_ledger(db, list(limits.users), list(limits.keys))
                for scope, book, caps in (
                    ("user", ledger.users, limits.users),
                    ("key", ledger.keys, limits.keys),
                ):
                    for owner, (spend, reserved) in book.items():
                        if spend + reserved > caps[owner]:
                            excesses.append(f"{scope} {owner}: {spend} + {reserved}")
                await anyio.sleep(SAMPLE_EVERY)

        async with anyio.create_task_group() as group:
            done = anyio.Event()
            group.start_soon(watch, done)
            seen = await _burst(base_urls, callers, fakes)
            done.set()
    finally:
        await db.aclose()
    return seen, excesses


def _settled(
    gateway: GatewayProcess, database_url: str, seen: Sequence[Seen], limits: Limits
) -> tuple[list[dict[str, Any]], Ledger, dict[str, Any]]:
    """Poll until every request has its row and nothing is reserved; the last reading.

    Rows first: a row and its charge commit together, so once every row is seen the ledger
    read after them carries every charge (the other order can read the ledger just before
    the last batch commits and its row just after).
    """

    async def read() -> Ledger:
        db = Database(database_url)
        try:
            return await _read_ledger(db, list(limits.users), list(limits.keys))
        finally:
            await db.aclose()

    deadline = time.monotonic() + SETTLE_WITHIN
    while True:
        rows = [
            row
            for user_id in limits.users
            for row in gateway.call("GET", f"/v1/usage?user_id={user_id}&limit=1000")
        ]
        ledger = anyio.run(read)
        shown = {user_id: gateway.call("GET", f"/v1/users/{user_id}") for user_id in limits.users}
        settled = (
            len(rows) >= len(seen)
            and ledger.leases == 0
            and all(
                reserved == 0 for _, reserved in [*ledger.users.values(), *ledger.keys.values()]
            )
            and all(user["reserved"] == 0 for user in shown.values())
        )
        if settled or time.monotonic() > deadline:
            return rows, ledger, shown
        time.sleep(0.1)


# --------------------------------------------------------------------------- the checks


def _expected_row(seen: Seen) -> tuple[str, int]:
    """The row's (status, status_code) for what the client saw (API.md: success or error)."""
    if seen.status in (403, 429, 502):
        return "error", seen.status
    fate = seen.kind.fate
    if fate is Fate.ANSWERS or (fate is Fate.CLIENT_ABANDONS and seen.status is None):
        return "success", 200
    if fate is Fate.DROPS:
        return "error", 502
    if fate is Fate.CLIENT_CLOSES_STREAM:
        return "error", 499
    raise AssertionError(f"no row expected for {seen}")


def _check(
    seen: Sequence[Seen],
    rows: Sequence[dict[str, Any]],
    ledger: Ledger,
    shown: dict[str, Any],
    limits: Limits,
    excesses: Sequence[str],
) -> None:
    problems = [problem for one in seen for problem in one.problems]
    assert not problems, "\n".join(problems)
    assert not excesses, f"spend + reserved above max_budget during the burst: {excesses[:5]}"

    # No 500, and every status one the request's fate allows.
    allowed: dict[Fate, set[int | None]] = {
        Fate.ANSWERS: {200, 403},
        Fate.FAILS: {502, 403},
        Fate.THROTTLES: {429, 403},
        Fate.DROPS: {200, 403},
        Fate.CLIENT_CLOSES_STREAM: {200, 403},
        Fate.CLIENT_ABANDONS: {None, 403},
    }
    for one in seen:
        assert one.status in allowed[one.kind.fate], one
    # Each caller asks for several times what its tighter budget allows: some requests are
    # refused (with that budget's message, checked above), and not all.
    for caller in {one.caller for one in seen}:
        statuses = Counter(one.status for one in seen if one.caller == caller)
        assert 0 < statuses[403] < statuses.total(), (caller.user_id, statuses)

    # Exactly one row per request, each with the outcome its client saw.
    ids = Counter(row["id"] for row in rows)
    assert [i for i, n in ids.items() if n > 1] == [], "one row per request"
    assert len(rows) == len(seen), Counter((row["provider"], row["status_code"]) for row in rows)
    by_id = {row["id"]: row for row in rows}
    unseen = dict(by_id)
    abandoned = 0
    for one in seen:
        if one.request_id is None:
            abandoned += 1
            continue
        row = unseen.pop(one.request_id)
        assert (row["status"], row["status_code"]) == _expected_row(one), (one, row)
        assert (row["provider"], row["model"]) == (one.kind.instance, one.kind.model), row
        if one.status == 200 and one.kind.fate is Fate.ANSWERS:
            assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_WORDS, REPLY_WORDS)
        if one.kind.fate is Fate.CLIENT_CLOSES_STREAM and one.status == 200:
            assert row["prompt_tokens"] > 0, "a client that leaves pays at least its input"
    # Rows of abandoned JSON calls: the gateway finished them upstream and billed them.
    assert len(unseen) == abandoned
    for row in unseen.values():
        assert (row["provider"], row["status"], row["status_code"]) == ("stalled", "success", 200)
        assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT_WORDS, REPLY_WORDS)

    # Every row's cost is its tokens at the price; refusals and failures cost nothing.
    for row in rows:
        cost = Decimal(str(row["cost"]))
        assert cost == _cost(row["prompt_tokens"], row["completion_tokens"]), row
        assert row["completion_tokens"] <= MAX_TOKENS, row
        if row["status_code"] in (403, 429) or row["provider"] in ("broken", "badkey"):
            assert cost == 0, row

    # The ledgers: exact, within their caps, nothing left reserved, no lease left open.
    assert ledger.leases == 0
    for user_id, cap in limits.users.items():
        spend, reserved = ledger.users[user_id]
        assert reserved == 0 and shown[user_id]["reserved"] == 0, (user_id, ledger)
        assert spend == sum(
            (Decimal(str(row["cost"])) for row in rows if row["user_id"] == user_id), Decimal(0)
        ), user_id
        assert Decimal(str(shown[user_id]["spend"])) == spend
        assert spend <= cap, f"user {user_id} spent {spend} of {cap}"
    for key_id, cap in limits.keys.items():
        spend, reserved = ledger.keys[key_id]
        assert reserved == 0, (key_id, ledger)
        assert spend == sum(
            (Decimal(str(row["cost"])) for row in rows if row["api_key_id"] == key_id),
            Decimal(0),
        ), key_id
        assert spend <= cap, f"key {key_id} spent {spend} of {cap}"


# --------------------------------------------------------------------------- the tests


def _budgeted_user(gateway: GatewayProcess, user_id: str, cap: Decimal) -> None:
    budget = gateway.call("POST", "/v1/budgets", {"max_budget": str(cap)})
    gateway.call("POST", "/v1/users", {"user_id": user_id, "budget_id": budget["budget_id"]})


def _user_refusal(user_id: str) -> frozenset[str]:
    return frozenset({f"User '{user_id}' has exceeded budget limit"})


def _run(
    gateways: Sequence[GatewayProcess],
    database_url: str,
    callers: Sequence[Caller],
    fakes: Fakes,
    limits: Limits,
) -> None:
    fakes.forget_requests()
    seen, excesses = anyio.run(
        _burst_watching_commitments,
        database_url,
        [gateway.base_url for gateway in gateways],
        callers,
        fakes,
        limits,
    )
    rows, ledger, shown = _settled(gateways[0], database_url, seen, limits)
    _check(seen, rows, ledger, shown, limits, excesses)


BUDGET = AFFORDED * COST


def test_burst_with_faults_on_two_workers(fakes: Fakes, database_url: str, tmp_path: Path) -> None:
    with _gateways(fakes, database_url, tmp_path, processes=1, workers=2) as gateways:
        _budgeted_user(gateways[0], "burst", BUDGET)
        key = gateways[0].call("POST", "/v1/keys", {"user_id": "burst"})["key"]
        caller = Caller(key, "burst", _user_refusal("burst"))
        _run(gateways, database_url, [caller], fakes, Limits({"burst": BUDGET}))


def test_burst_with_faults_on_two_gateways(fakes: Fakes, database_url: str, tmp_path: Path) -> None:
    with _gateways(fakes, database_url, tmp_path, processes=2, workers=1) as gateways:
        _budgeted_user(gateways[0], "shared", BUDGET)
        key = gateways[0].call("POST", "/v1/keys", {"user_id": "shared"})["key"]
        caller = Caller(key, "shared", _user_refusal("shared"))
        _run(gateways, database_url, [caller], fakes, Limits({"shared": BUDGET}))


def test_key_and_user_budgets_whichever_is_tighter(
    fakes: Fakes, database_url: str, tmp_path: Path
) -> None:
    """Two users, each with a budget and a key that has one too, hit at the same time.

    ``keyed``'s key allows far less than its user's budget, so the key refuses (with its own
    message) and its spend stays within the key's cap; ``capped``'s key allows far more than
    its user's budget, so the user's budget refuses. Both ledgers, users' and keys', must be
    exact.
    """
    key_cap = Decimal(3) * COST
    roomy = Decimal(len(MIX)) * BUDGET
    with _gateways(fakes, database_url, tmp_path, processes=1, workers=2) as gateways:
        gateway = gateways[0]
        _budgeted_user(gateway, "keyed", roomy)
        _budgeted_user(gateway, "capped", BUDGET)
        tight = gateway.call("POST", "/v1/keys", {"user_id": "keyed", "max_budget": str(key_cap)})
        loose = gateway.call("POST", "/v1/keys", {"user_id": "capped", "max_budget": str(roomy)})
        callers = [
            Caller(
                tight["key"],
                "keyed",
                frozenset({f"API key '{tight['id']}' has exceeded budget limit"}),
            ),
            Caller(loose["key"], "capped", _user_refusal("capped")),
        ]
        limits = Limits(
            {"keyed": roomy, "capped": BUDGET}, {tight["id"]: key_cap, loose["id"]: roomy}
        )
        _run(gateways, database_url, callers, fakes, limits)
