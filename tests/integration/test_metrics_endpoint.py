"""``GET /metrics`` mounted on a FastAPI app, as ``create_app`` will mount it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from otari_gateway.api.metrics import metrics_router
from otari_gateway.telemetry.metrics import MULTIPROC_DIR_ENV, Metrics
from otari_gateway.usage import Usage


def app_with(metrics: Metrics) -> FastAPI:
    app = FastAPI()
    app.include_router(metrics_router(metrics))
    return app


def observe(metrics: Metrics) -> None:
    metrics.observe_request(
        surface="chat",
        provider="openai",
        model="gpt-4o",
        status=200,
        seconds=0.3,
        usage=Usage(prompt_tokens=12, completion_tokens=3),
        cost=Decimal("0.002"),
    )


def requests_total(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "otari_requests_total"
    )


def test_metrics_are_served_without_credentials() -> None:
    metrics = Metrics()
    observe(metrics)
    metrics.set_queue_depth_source(lambda: 9)
    with TestClient(app_with(metrics)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "charset=utf-8" in response.headers["content-type"]
    assert requests_total(response.text) == 1
    assert "otari_usage_writer_queue_depth 9.0" in response.text


def test_each_scrape_shows_the_current_counts() -> None:
    metrics = Metrics()
    with TestClient(app_with(metrics)) as client:
        assert requests_total(client.get("/metrics").text) == 0
        observe(metrics)
        observe(metrics)
        assert requests_total(client.get("/metrics").text) == 2


def test_metrics_stay_out_of_the_openapi_document() -> None:
    with TestClient(app_with(Metrics())) as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert "/metrics" not in paths
        assert client.post("/metrics").status_code == 405


def test_any_worker_answers_for_all_in_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    answering = Metrics(process_identifier=lambda: 201)
    other = Metrics(process_identifier=lambda: 202)
    observe(answering)
    observe(other)
    observe(other)
    with TestClient(app_with(answering)) as client:
        assert requests_total(client.get("/metrics").text) == 3
