"""Rerank (and Voyage's embeddings) through any-llm: client → gateway → provider SDK → fake.

Cohere's and Voyage's SDKs are pointed at fakes that speak each API's own rerank shape
(Cohere v2: ``results`` and ``meta``; Voyage: ``data``, ``top_k`` and ``usage``). The client
sends API.md's Cohere-style body and gets API.md's answer back whatever the provider: results
best first, an ``id``, the model, the tokens read. Each call leaves one usage row billed on
the reported tokens plus the per-request price.
"""

from __future__ import annotations

import base64
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.fakes import content as c
from tests.fakes.cohere_upstream import FakeCohere
from tests.fakes.voyage_upstream import FakeVoyage
from tests.integration.conftest import MASTER_KEY, create_key, usage_rows
from tests.integration.gateway_process import GatewayProcess

QUERY = "capital of france"
DOCUMENTS: list[Any] = [
    "berlin is in germany",
    {"text": "paris is the capital of france"},
    "the capital of spain",
]
TEXTS = ["berlin is in germany", "paris is the capital of france", "the capital of spain"]
TOKENS = c.rerank_tokens(QUERY, TEXTS)
RERANK_PRICE = {"input_price_per_million": "2", "price_per_request": "0.001"}


@dataclass
class Upstreams:
    gateway: GatewayProcess
    cohere: FakeCohere
    voyage: FakeVoyage


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    with ExitStack() as exits:
        cohere = exits.enter_context(FakeCohere())
        voyage = exits.enter_context(FakeVoyage())
        workdir: Path = tmp_path_factory.mktemp("anyllm-rerank")
        config = {
            "master_key": MASTER_KEY,
            "pricing": {
                "cohere:rerank-v3.5": RERANK_PRICE,
                "voyage:rerank-2": RERANK_PRICE,
                "voyage:voyage-3": {"input_price_per_million": "0.06"},
                "ollama:bge-reranker": RERANK_PRICE,
                "cohere:missing-model": RERANK_PRICE,
            },
            "providers": {
                "cohere": {"api_key": cohere.api_key, "api_base": cohere.base_url},
                "voyage": {"api_key": voyage.api_key, "api_base": voyage.api_base},
                # Reached through any-llm without rerank; never called.
                "ollama": {"api_base": "http://127.0.0.1:9"},
            },
        }
        gateway = GatewayProcess(config, workdir)
        gateway.start()
        exits.callback(gateway.stop)
        yield Upstreams(gateway, cohere, voyage)


def _key(upstreams: Upstreams, user_id: str) -> str:
    return str(create_key(upstreams.gateway.base_url, user_id=user_id)["key"])


def _rerank(upstreams: Upstreams, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        upstreams.gateway.base_url + "/v1/rerank",
        data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            answer: dict[str, Any] = orjson.loads(response.read())
            return response.status, answer
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def _cost(row: dict[str, Any]) -> Decimal:
    return Decimal(str(row["cost"])).quantize(Decimal("0.000001"))


@pytest.mark.parametrize(("instance", "model"), [("cohere", "rerank-v3.5"), ("voyage", "rerank-2")])
def test_rerank_answers_best_first_and_bills_the_tokens_read(
    upstreams: Upstreams, instance: str, model: str
) -> None:
    user_id = f"rerank-{instance}"
    body = {"model": f"{instance}:{model}", "query": QUERY, "documents": DOCUMENTS, "top_n": 2}
    status, answer = _rerank(upstreams, _key(upstreams, user_id), body)
    assert status == 200, answer
    assert [r["index"] for r in answer["results"]] == [1, 2]
    assert answer["results"][0]["relevance_score"] == 1.0
    assert answer["model"] == model
    assert answer["id"]
    assert answer["usage"] == {"total_tokens": TOKENS}
    [row] = usage_rows(upstreams.gateway.base_url, user_id)
    assert (row["endpoint"], row["provider"], row["model"]) == ("rerank", instance, model)
    assert (row["status_code"], row["prompt_tokens"]) == (200, TOKENS)
    assert _cost(row) == Decimal(TOKENS) * 2 / 1_000_000 + Decimal("0.001")


def test_rerank_documents_reach_the_provider_as_its_sdk_sends_them(upstreams: Upstreams) -> None:
    key = _key(upstreams, "rerank-wire")
    body = {"model": "cohere:rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 1}
    assert _rerank(upstreams, key, body)[0] == 200
    sent = upstreams.cohere.last_request
    assert sent.path == "/v2/rerank"
    assert sent.headers["authorization"] == f"Bearer {upstreams.cohere.api_key}"
    assert sent.json_object() == {
        "model": "rerank-v3.5",
        "query": QUERY,
        "documents": TEXTS,
        "top_n": 1,
    }
    body["model"] = "voyage:rerank-2"
    assert _rerank(upstreams, key, body)[0] == 200
    sent = upstreams.voyage.last_request
    assert sent.path == "/v1/rerank"
    assert sent.json_object()["documents"] == TEXTS
    assert sent.json_object()["top_k"] == 1


def test_rerank_on_a_provider_type_without_it_is_a_clear_400(upstreams: Upstreams) -> None:
    status, answer = _rerank(
        upstreams,
        _key(upstreams, "rerank-unsupported"),
        {"model": "ollama:bge-reranker", "query": QUERY, "documents": DOCUMENTS},
    )
    assert status == 400, answer
    assert "rerank" in answer["error"]["message"]


def test_a_missing_rerank_model_is_a_404(upstreams: Upstreams) -> None:
    key = _key(upstreams, "rerank-missing")
    status, answer = _rerank(
        upstreams, key, {"model": "cohere:missing-model", "query": QUERY, "documents": DOCUMENTS}
    )
    assert status == 404, answer
    assert answer["error"]["type"] == "not_found_error"


def test_voyage_embeddings_as_floats_and_as_base64(upstreams: Upstreams) -> None:
    user_id = "voyage-embed"
    key = _key(upstreams, user_id)
    with openai.OpenAI(
        base_url=upstreams.gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=20
    ) as client:
        floats = client.embeddings.create(
            model="voyage:voyage-3", input=["a b", "c"], encoding_format="float"
        )
        raw = client.embeddings.with_raw_response.create(model="voyage:voyage-3", input="a b")
    assert [item.embedding for item in floats.data] == [
        pytest.approx(c.embedding_vector("a b"), abs=1e-6),
        pytest.approx(c.embedding_vector("c"), abs=1e-6),
    ]
    assert floats.usage.prompt_tokens == 3
    encoded = orjson.loads(raw.http_response.content)["data"][0]["embedding"]
    packed = base64.b64decode(encoded)
    decoded = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert decoded == pytest.approx(c.embedding_vector("a b"), abs=1e-6)
    assert upstreams.voyage.last_request.path == "/v1/embeddings"
    rows = usage_rows(upstreams.gateway.base_url, user_id, 2)
    assert sorted(row["prompt_tokens"] for row in rows) == [2, 3]
    assert {row["endpoint"] for row in rows} == {"embeddings"}
