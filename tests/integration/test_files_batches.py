"""``/v1/files`` and ``/v1/batches`` through the real gateway, with the official SDK.

A gateway of this module's own (config prices, ``require_pricing``) in front of the fake
OpenAI upstreams: batch files reach the upstream with bare models, every object belongs to
the user who made it (anyone else gets a 404), the JSONL and provider errors of the
contract, and a finished batch billed exactly once — one usage row at the price × 0.5 —
however many retrieves race for it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import openai
import orjson
import pytest

from tests.fakes.server import FormUpload
from tests.integration.conftest import MASTER_KEY, Stack, create_key, priced_stack

PRICES: dict[str, dict[str, Any]] = {
    "openai:gpt-4o-mini": {
        "input_price_per_million": "1.5",
        "output_price_per_million": "6",
        "cache_read_price_per_million": "0.75",
    },
    "local:gpt-4o-mini": {"input_price_per_million": "1", "output_price_per_million": "1"},
    # Also priced per request, so billing the wrong number of requests shows in the cost.
    "openai:gpt-4.1-nano": {
        "input_price_per_million": "1.5",
        "output_price_per_million": "6",
        "cache_read_price_per_million": "0.75",
        "price_per_request": "0.01",
    },
}
USAGE = {
    "input_tokens": 10_000,
    "output_tokens": 4_000,
    "total_tokens": 14_000,
    "input_tokens_details": {"cached_tokens": 2_000},
    "output_tokens_details": {"reasoning_tokens": 100},
}
# (8000 × 1.5 + 2000 × 0.75 + 4000 × 6) / 1e6 = 0.0375, at the batch discount of 0.5.
BATCH_COST = Decimal("0.01875")
# The same usage and 2 requests at 0.01, at the batch discount: (0.0375 + 0.02) × 0.5.
TWO_REQUESTS_COST = Decimal("0.02875")
ROW_WITHIN = 2.0


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with priced_stack(tmp_path_factory.mktemp("batches"), PRICES) as stack:
        yield stack


def _new_user(gw: Stack, **fields: Any) -> tuple[str, str]:
    user_id = f"batch-{uuid.uuid4().hex[:10]}"
    return user_id, str(create_key(gw.base_url, user_id=user_id, **fields)["key"])


@pytest.fixture
def user_key(gw: Stack) -> tuple[str, str]:
    for fake in (gw.openai_fake, gw.local_fake, gw.anthropic_fake):
        fake.reset()
    return _new_user(gw)


def _client(gw: Stack, key: str, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=20, **options
    )


def _jsonl(*models: str, endpoint: str = "/v1/chat/completions") -> bytes:
    lines = [
        {
            "custom_id": f"request-{index}",
            "method": "POST",
            "url": endpoint,
            "body": {"model": model, "messages": [{"role": "user", "content": f"hi {index}"}]},
        }
        for index, model in enumerate(models, start=1)
    ]
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def _upload_batch_file(client: openai.OpenAI, *models: str) -> str:
    return client.files.create(file=("requests.jsonl", _jsonl(*models)), purpose="batch").id


def _management(gw: Stack, path: str) -> Any:
    request = urllib.request.Request(
        gw.base_url + path, headers={"Authorization": f"Bearer {MASTER_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def _rows(gw: Stack, user_id: str, count: int) -> list[dict[str, Any]]:
    """The user's usage rows once ``count`` are readable (and never more)."""
    query = urllib.parse.urlencode({"user_id": user_id})
    deadline = time.monotonic() + ROW_WITHIN
    while True:
        rows: list[dict[str, Any]] = _management(gw, f"/v1/usage?{query}")
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return rows
        time.sleep(0.05)


def _raw(
    gw: Stack,
    method: str,
    path: str,
    *,
    key: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        gw.base_url + path,
        data=body,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --------------------------------------------------------------------------- files


def test_batch_file_reaches_the_upstream_with_bare_models(
    gw: Stack, user_key: tuple[str, str]
) -> None:
    _, key = user_key
    with _client(gw, key) as client:
        created = client.files.create(
            file=("requests.jsonl", _jsonl("openai:gpt-4o-mini", "openai/gpt-4o-mini")),
            purpose="batch",
        )
        received = gw.openai_fake.last_request
        assert received.path == "/v1/files"
        assert received.form is not None
        upload = received.form["file"]
        assert isinstance(upload, FormUpload)
        assert received.form["purpose"] == "batch"
        sent = [orjson.loads(line) for line in upload.data.splitlines()]
        assert [line["body"]["model"] for line in sent] == ["gpt-4o-mini", "gpt-4o-mini"]
        assert [line["custom_id"] for line in sent] == ["request-1", "request-2"]
        assert received.headers["authorization"] == f"Bearer {gw.openai_fake.api_key}"

        assert created.object == "file"
        assert created.purpose == "batch"
        assert created.id in gw.openai_fake.files
        assert client.files.retrieve(created.id).bytes == len(upload.data)
        assert client.files.content(created.id).content == upload.data
        listed = client.files.list()
        assert [f.id for f in listed.data] == [created.id]
        assert client.files.list(purpose="user_data").data == []

        deleted = client.files.delete(created.id)
        assert deleted.deleted is True
        assert created.id not in gw.openai_fake.files
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(created.id)
        assert client.files.list().data == []


def test_a_file_gone_upstream_is_forgotten_on_delete(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    with _client(gw, key) as client:
        file_id = _upload_batch_file(client, "openai:gpt-4o-mini")
        gw.openai_fake.fail_next(404)
        with pytest.raises(openai.NotFoundError):
            client.files.delete(file_id)
        assert client.files.list().data == []
        assert file_id in gw.openai_fake.files


def test_batch_file_provider_field_must_match_its_lines(
    gw: Stack, user_key: tuple[str, str]
) -> None:
    _, key = user_key
    with _client(gw, key) as client, pytest.raises(openai.BadRequestError) as refused:
        client.files.create(
            file=("requests.jsonl", _jsonl("openai:gpt-4o-mini")),
            purpose="batch",
            extra_body={"provider": "local"},
        )
    assert refused.value.param == "provider"
    assert gw.openai_fake.requests == []


def test_other_files_go_to_the_named_provider(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    with _client(gw, key) as client:
        with pytest.raises(openai.BadRequestError) as unnamed:
            client.files.create(file=("notes.txt", b"some notes"), purpose="user_data")
        assert unnamed.value.code == "provider_required"
        assert "'provider'" in unnamed.value.message
        created = client.files.create(
            file=("notes.txt", b"some notes"), purpose="user_data", extra_body={"provider": "local"}
        )
        assert created.id in gw.local_fake.files
        form = gw.local_fake.last_request.form
        assert form is not None
        assert "provider" not in form
        assert client.files.content(created.id).content == b"some notes"
        assert gw.openai_fake.requests == []


def test_objects_of_another_user_are_not_found(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    _, other = _new_user(gw)
    with _client(gw, key) as client:
        file_id = _upload_batch_file(client, "openai:gpt-4o-mini")
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    upstream_calls = len(gw.openai_fake.requests)
    with _client(gw, other) as client:
        for attempt in (
            lambda: client.files.retrieve(file_id),
            lambda: client.files.content(file_id),
            lambda: client.files.delete(file_id),
            lambda: client.batches.retrieve(batch.id),
            lambda: client.batches.cancel(batch.id),
            lambda: client.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            ),
        ):
            with pytest.raises(openai.NotFoundError) as missing:
                attempt()
            assert missing.value.code == "not_found"
            assert missing.value.type == "not_found_error"
        assert client.files.list().data == []
        assert client.batches.list().data == []
    assert len(gw.openai_fake.requests) == upstream_calls
    assert file_id in gw.openai_fake.files


def test_master_key_acts_for_the_named_user(gw: Stack, user_key: tuple[str, str]) -> None:
    user_id, key = user_key
    with _client(gw, key) as client:
        file_id = _upload_batch_file(client, "openai:gpt-4o-mini")
    status, body = _raw(gw, "GET", f"/v1/files/{file_id}", key=MASTER_KEY)
    assert status == 400
    assert orjson.loads(body)["error"]["code"] == "user_required"
    status, body = _raw(
        gw, "GET", f"/v1/files/{file_id}", key=MASTER_KEY, headers={"X-Otari-User": user_id}
    )
    assert status == 200
    assert orjson.loads(body)["id"] == file_id
    query = urllib.parse.urlencode({"user": user_id})
    status, body = _raw(gw, "GET", f"/v1/files?{query}", key=MASTER_KEY)
    assert [f["id"] for f in orjson.loads(body)["data"]] == [file_id]
    other_user, _ = _new_user(gw)
    status, _ = _raw(
        gw, "GET", f"/v1/files/{file_id}", key=MASTER_KEY, headers={"X-Otari-User": other_user}
    )
    assert status == 404
    # Reading never creates a user.
    status, body = _raw(
        gw, "GET", f"/v1/files/{file_id}", key=MASTER_KEY, headers={"X-Otari-User": "nobody-x"}
    )
    assert status == 403
    assert orjson.loads(body)["error"]["code"] == "user_not_found"


# --------------------------------------------------------------------------- JSONL errors


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_jsonl("openai:gpt-4o-mini", "local:gpt-4o-mini"), "line 2"),
        (_jsonl("openai:gpt-4o-mini") + b"{not json\n", "line 2 of the batch file is not valid"),
        (_jsonl("nowhere:gpt-4o-mini"), "line 1 of the batch file names an unknown model"),
        (_jsonl("openai:gpt-4o-mini", "openai:gpt-4o"), "one model"),
        (_jsonl("anthropic:claude-sonnet-4-5"), "no OpenAI Batch API"),
        (b'{"custom_id": "a", "body": {"messages": []}}\n', "line 1"),
        (b"\n\n", "no requests"),
    ],
    ids=[
        "mixed-instances",
        "malformed",
        "unknown-instance",
        "two-models",
        "anthropic",
        "no-model",
        "empty",
    ],
)
def test_bad_batch_files_are_refused_before_any_upload(
    gw: Stack, user_key: tuple[str, str], data: bytes, fragment: str
) -> None:
    _, key = user_key
    with _client(gw, key) as client, pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("requests.jsonl", data), purpose="batch")
    assert fragment in refused.value.message
    assert gw.openai_fake.requests == []
    assert gw.local_fake.requests == []


def test_batch_models_must_be_allowed_and_priced(gw: Stack) -> None:
    _, limited = _new_user(gw, allowed_models=["openai:gpt-4o"])
    _, key = _new_user(gw)
    with _client(gw, limited) as client, pytest.raises(openai.PermissionDeniedError) as denied:
        _upload_batch_file(client, "openai:gpt-4o-mini")
    assert denied.value.code == "model_not_allowed"
    with _client(gw, key) as client, pytest.raises(openai.APIStatusError) as unpriced:
        _upload_batch_file(client, "openai:unpriced-model")
    assert unpriced.value.status_code == 402


def test_upload_over_the_body_limit_is_a_413(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    with _client(gw, key) as client, pytest.raises(openai.APIStatusError) as too_large:
        client.files.create(file=("big.jsonl", b"x" * (300 * 1024)), purpose="batch")
    assert too_large.value.status_code == 413


# --------------------------------------------------------------------------- batches


def test_unknown_input_file_is_a_404(gw: Stack, user_key: tuple[str, str]) -> None:
    _, key = user_key
    with _client(gw, key) as client, pytest.raises(openai.NotFoundError) as missing:
        client.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert missing.value.code == "not_found"
    assert missing.value.param == "input_file_id"
    assert gw.openai_fake.requests == []


def test_completed_batch_is_billed_once_under_concurrent_retrieves(
    gw: Stack, user_key: tuple[str, str]
) -> None:
    user_id, key = user_key
    with _client(gw, key) as client:
        file_id = _upload_batch_file(client, "openai:gpt-4o-mini", "openai:gpt-4o-mini")
        batch = client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": "nightly"},
        )
        sent = gw.openai_fake.last_request.json_object()
        assert sent == {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"job": "nightly"},
        }
        assert batch.status == "validating"
        assert client.batches.retrieve(batch.id).status == "validating"
        gw.openai_fake.complete_batch(batch.id, USAGE)
        with ThreadPoolExecutor(10) as pool:
            seen = list(pool.map(lambda _: client.batches.retrieve(batch.id), range(10)))
        assert {b.status for b in seen} == {"completed"}
        output_id = seen[0].output_file_id
        assert output_id is not None
        output = client.files.content(output_id).content
        assert [orjson.loads(line)["custom_id"] for line in output.splitlines()] == [
            "request-1",
            "request-2",
        ]
        client.batches.retrieve(batch.id)

    (row,) = _rows(gw, user_id, 1)
    assert row["id"] == batch.id
    assert row["endpoint"] == "batches"
    assert row["model"] == "gpt-4o-mini"
    assert row["provider"] == "openai"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (10_000, 4_000)
    assert row["cache_read_tokens"] == 2_000
    assert Decimal(str(row["cost"])) == BATCH_COST
    time.sleep(0.5)
    _rows(gw, user_id, 1)
    user = _management(gw, f"/v1/users/{user_id}")
    assert Decimal(str(user["spend"])) == BATCH_COST


@pytest.mark.parametrize("reports_usage", [True, False], ids=["usage", "output-file"])
def test_batch_cancelled_midway_bills_its_completed_requests_once(
    gw: Stack, user_key: tuple[str, str], reports_usage: bool
) -> None:
    """Without a ``usage`` total on the batch object, the usage of the two answers in the
    output file (``REQUEST_USAGE`` each, the same sum) is billed."""
    user_id, key = user_key
    model = "openai:gpt-4.1-nano"
    with _client(gw, key) as client:
        file_id = _upload_batch_file(client, model, model, model)
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        gw.openai_fake.run_batch(batch.id, completed=2, usage=USAGE if reports_usage else None)
        assert client.batches.retrieve(batch.id).status == "in_progress"
        assert client.batches.cancel(batch.id).status == "cancelling"
        with ThreadPoolExecutor(10) as pool:
            seen = list(pool.map(lambda _: client.batches.retrieve(batch.id), range(10)))
        assert {b.status for b in seen} == {"cancelled"}
        counts = seen[0].request_counts
        assert counts is not None and (counts.total, counts.completed) == (3, 2)
        output_id = seen[0].output_file_id
        assert output_id is not None
        output = client.files.content(output_id).content
        assert [orjson.loads(line)["custom_id"] for line in output.splitlines()] == [
            "request-1",
            "request-2",
        ]
        client.batches.retrieve(batch.id)

    (row,) = _rows(gw, user_id, 1)
    assert (row["id"], row["endpoint"], row["model"]) == (batch.id, "batches", "gpt-4.1-nano")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (10_000, 4_000)
    assert Decimal(str(row["cost"])) == TWO_REQUESTS_COST
    time.sleep(0.5)
    _rows(gw, user_id, 1)
    user = _management(gw, f"/v1/users/{user_id}")
    assert Decimal(str(user["spend"])) == TWO_REQUESTS_COST


def test_batches_list_newest_first_and_cancel(gw: Stack, user_key: tuple[str, str]) -> None:
    user_id, key = user_key
    with _client(gw, key) as client:
        file_id = _upload_batch_file(client, "openai:gpt-4o-mini")
        made = [
            client.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            ).id
            for _ in range(3)
        ]
        first = client.batches.list(limit=2)
        assert [b.id for b in first.data] == made[::-1][:2]
        assert first.has_more is True
        rest = client.batches.list(limit=2, after=first.data[-1].id)
        assert [b.id for b in rest.data] == [made[0]]
        assert rest.has_more is False

        cancelling = client.batches.cancel(made[0])
        assert cancelling.status == "cancelling"
        assert gw.openai_fake.last_request.path == f"/v1/batches/{made[0]}/cancel"
        assert client.batches.retrieve(made[0]).status == "cancelled"
        assert [b.status for b in client.batches.list().data] == [
            "validating",
            "validating",
            "cancelled",
        ]
    # A batch that ends without usage costs nothing and leaves no row.
    time.sleep(0.5)
    assert _management(gw, f"/v1/usage?{urllib.parse.urlencode({'user_id': user_id})}") == []
