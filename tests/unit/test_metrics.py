"""``telemetry/metrics.py``: every metric and label set, the exposition format, instance
isolation, and multiprocess mode (values of several workers summed through files)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, values
from prometheus_client.parser import text_string_to_metric_families

from otari_gateway.telemetry import metrics as metrics_module
from otari_gateway.telemetry.metrics import (
    LATENCY_BUCKETS,
    MULTIPROC_DIR_ENV,
    Metrics,
    status_label,
)
from otari_gateway.usage import Usage

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: Metrics) -> Samples:
    body, _ = metrics.render()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def observe(metrics: Metrics, **overrides: object) -> None:
    fields: dict[str, object] = {
        "surface": "chat",
        "provider": "openai",
        "model": "gpt-4o",
        "status": 200,
        "seconds": 0.4,
        "usage": Usage(prompt_tokens=100, completion_tokens=20),
        "cost": Decimal("0.0015"),
    }
    fields.update(overrides)
    metrics.observe_request(**fields)  # type: ignore[arg-type]


REQUEST = {"surface": "chat", "provider": "openai", "model": "gpt-4o", "status": "200"}


# --- requests, latency, tokens, cost -------------------------------------------------------


def test_requests_are_counted_by_surface_provider_model_and_status() -> None:
    metrics = Metrics()
    observe(metrics)
    observe(metrics)
    observe(metrics, surface="messages", provider="anthropic", model="claude", status=429)
    samples = scrape(metrics)
    assert value(samples, "otari_requests_total", **REQUEST) == 2
    assert (
        value(
            samples,
            "otari_requests_total",
            surface="messages",
            provider="anthropic",
            model="claude",
            status="429",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (200, "200"),
        (429, "429"),
        (499, "499"),
        (502, "502"),
        (201, "2xx"),
        (418, "4xx"),
        (599, "5xx"),
    ],
)
def test_status_is_the_exact_known_code_or_its_class(status: int, label: str) -> None:
    assert status_label(status) == label
    metrics = Metrics()
    observe(metrics, status=status)
    assert value(scrape(metrics), "otari_requests_total", **{**REQUEST, "status": label}) == 1


def test_a_request_that_never_routed_is_labelled_none() -> None:
    metrics = Metrics()
    observe(metrics, provider=None, model=None, status=404, usage=None, cost=Decimal(0))
    samples = scrape(metrics)
    labels = {"surface": "chat", "provider": "none", "model": "none", "status": "404"}
    assert value(samples, "otari_requests_total", **labels) == 1
    assert value(samples, "otari_request_duration_seconds_count", surface="chat", provider="none")


def test_duration_histogram_uses_buckets_for_llm_calls() -> None:
    metrics = Metrics()
    for seconds in (0.003, 0.7, 45.0, 400.0):
        observe(metrics, seconds=seconds)
    samples = scrape(metrics)
    where = {"surface": "chat", "provider": "openai"}
    bounds = sorted(
        float(dict(labels)["le"])
        for name, labels in samples
        if name == "otari_request_duration_seconds_bucket"
    )
    assert bounds == [*LATENCY_BUCKETS, float("inf")]
    assert LATENCY_BUCKETS[0] == 0.005
    assert LATENCY_BUCKETS[-1] == 300.0

    def bucket(le: str) -> float | None:
        return value(samples, "otari_request_duration_seconds_bucket", le=le, **where)

    assert bucket("0.005") == 1
    assert bucket("1.0") == 2
    assert bucket("60.0") == 3
    assert bucket("300.0") == 3
    assert bucket("+Inf") == 4
    assert value(samples, "otari_request_duration_seconds_count", **where) == 4
    assert value(samples, "otari_request_duration_seconds_sum", **where) == pytest.approx(445.703)


def test_tokens_are_counted_by_kind() -> None:
    metrics = Metrics()
    usage = Usage(prompt_tokens=1000, completion_tokens=50, cache_read_tokens=800)
    observe(metrics, usage=usage)
    observe(metrics, usage=Usage(prompt_tokens=10, completion_tokens=5, cache_write_tokens=7))
    observe(metrics, usage=None)
    samples = scrape(metrics)
    where = {"provider": "openai", "model": "gpt-4o"}
    assert value(samples, "otari_tokens_total", kind="prompt", **where) == 1010
    assert value(samples, "otari_tokens_total", kind="completion", **where) == 55
    assert value(samples, "otari_tokens_total", kind="cache_read", **where) == 800
    assert value(samples, "otari_tokens_total", kind="cache_write", **where) == 7


def test_cost_is_summed_in_dollars() -> None:
    metrics = Metrics()
    observe(metrics, cost=Decimal("0.001500"))
    observe(metrics, cost=Decimal("0.25"))
    observe(metrics, cost=Decimal(0))
    samples = scrape(metrics)
    where = {"provider": "openai", "model": "gpt-4o"}
    assert value(samples, "otari_cost_usd_total", **where) == pytest.approx(0.2515)


def test_label_names_carry_no_ids() -> None:
    metrics = Metrics()
    observe(metrics)
    metrics.budget_refused("user")
    metrics.rate_limited("key:k_secret_id")
    body, _ = metrics.render()
    assert b"k_secret_id" not in body
    names = {
        family.name: {key for sample in family.samples for key in sample.labels if key != "le"}
        for family in text_string_to_metric_families(body.decode())
    }
    assert names == {
        "otari_requests": {"surface", "provider", "model", "status"},
        "otari_request_duration_seconds": {"surface", "provider"},
        "otari_tokens": {"provider", "model", "kind"},
        "otari_cost_usd": {"provider", "model"},
        "otari_budget_refusals": {"scope"},
        "otari_rate_limit_hits": {"scope"},
        "otari_usage_writer_queue_depth": set(),
    }


def test_models_beyond_the_cap_are_counted_as_other() -> None:
    metrics = Metrics(max_models=2)
    for model in ("a", "b", "made-up-1", "made-up-2", "a"):
        observe(metrics, model=model)
    samples = scrape(metrics)
    models = {
        dict(labels)["model"]: count
        for (name, labels), count in samples.items()
        if name == "otari_requests_total"
    }
    assert models == {"a": 2, "b": 1, "other": 2}


def test_counts_stay_right_past_the_series_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "_MAX_CACHED_SERIES", 1)
    metrics = Metrics()
    for status in (200, 500, 500, 200, 500):
        observe(metrics, status=status)
    samples = scrape(metrics)
    assert value(samples, "otari_requests_total", **REQUEST) == 2
    assert value(samples, "otari_requests_total", **{**REQUEST, "status": "500"}) == 3


# --- refusals and the usage writer ---------------------------------------------------------


def test_budget_refusals_by_scope() -> None:
    metrics = Metrics()
    assert value(scrape(metrics), "otari_budget_refusals_total", scope="key") == 0
    metrics.budget_refused("user")
    metrics.budget_refused("user")
    metrics.budget_refused("key")
    metrics.budget_refused("team")
    samples = scrape(metrics)
    assert value(samples, "otari_budget_refusals_total", scope="user") == 2
    assert value(samples, "otari_budget_refusals_total", scope="key") == 1
    assert value(samples, "otari_budget_refusals_total", scope="other") == 1


def test_rate_limit_hits_by_scope() -> None:
    metrics = Metrics()
    assert value(scrape(metrics), "otari_rate_limit_hits_total", scope="global") == 0
    metrics.rate_limited("global")
    metrics.rate_limited("key")
    metrics.rate_limited("key:k_1")
    metrics.rate_limited("key:k_2")
    metrics.rate_limited("upstream")
    samples = scrape(metrics)
    assert value(samples, "otari_rate_limit_hits_total", scope="global") == 1
    assert value(samples, "otari_rate_limit_hits_total", scope="key") == 3
    assert value(samples, "otari_rate_limit_hits_total", scope="other") == 1


def test_queue_depth_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    assert value(scrape(metrics), "otari_usage_writer_queue_depth") == 0
    depth = [5]
    metrics.set_queue_depth_source(lambda: depth[0])
    assert value(scrape(metrics), "otari_usage_writer_queue_depth") == 5
    depth[0] = 42
    assert value(scrape(metrics), "otari_usage_writer_queue_depth") == 42


# --- exposition and isolation --------------------------------------------------------------


def test_exposition_is_the_prometheus_text_format() -> None:
    metrics = Metrics()
    observe(metrics)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    text = body.decode()
    assert "# HELP otari_requests_total " in text
    assert "# TYPE otari_request_duration_seconds histogram" in text
    assert "_created" not in text  # one extra series per label set, for nothing
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types == {
        "otari_requests": "counter",
        "otari_request_duration_seconds": "histogram",
        "otari_tokens": "counter",
        "otari_cost_usd": "counter",
        "otari_budget_refusals": "counter",
        "otari_rate_limit_hits": "counter",
        "otari_usage_writer_queue_depth": "gauge",
    }


def test_instances_are_independent_and_leave_the_default_registry_alone() -> None:
    first, second = Metrics(), Metrics()
    observe(first)
    observe(first)
    observe(second)
    first.rate_limited("global")
    assert value(scrape(first), "otari_requests_total", **REQUEST) == 2
    assert value(scrape(second), "otari_requests_total", **REQUEST) == 1
    assert value(scrape(second), "otari_rate_limit_hits_total", scope="global") == 0
    assert REGISTRY.get_sample_value("otari_requests_total", REQUEST) is None


# --- multiprocess mode ---------------------------------------------------------------------


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(directory))
    return directory


def two_workers() -> tuple[Metrics, Metrics]:
    """Two Metrics standing for two worker processes (distinct file names)."""
    return Metrics(process_identifier=lambda: 101), Metrics(process_identifier=lambda: 102)


def test_multiprocess_sums_every_worker(
    multiproc_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = two_workers()
    assert one.multiprocess_dir == str(multiproc_dir)
    observe(one, seconds=0.2, cost=Decimal("0.5"))
    observe(two, seconds=2.0, cost=Decimal("0.25"))
    observe(two, status=502, usage=None, cost=Decimal(0))
    one.budget_refused("user")
    two.budget_refused("user")
    two.rate_limited("key:k_9")
    files = sorted(path.name for path in multiproc_dir.iterdir())
    assert "counter_101.db" in files
    assert "counter_102.db" in files
    assert "histogram_102.db" in files

    for reader in (one, two):
        samples = scrape(reader)
        assert value(samples, "otari_requests_total", **REQUEST) == 2
        assert value(samples, "otari_requests_total", **{**REQUEST, "status": "502"}) == 1
        where = {"surface": "chat", "provider": "openai"}
        assert value(samples, "otari_request_duration_seconds_count", **where) == 3
        assert value(samples, "otari_request_duration_seconds_bucket", le="0.25", **where) == 1
        tokens = {"provider": "openai", "model": "gpt-4o"}
        assert value(samples, "otari_tokens_total", kind="prompt", **tokens) == 200
        assert value(samples, "otari_cost_usd_total", **tokens) == pytest.approx(0.75)
        assert value(samples, "otari_budget_refusals_total", scope="user") == 2
        assert value(samples, "otari_rate_limit_hits_total", scope="key") == 1

    # The same families as in single-process mode.
    merged = text_string_to_metric_families(one.render()[0].decode())
    monkeypatch.delenv(MULTIPROC_DIR_ENV)
    single = Metrics()
    observe(single)
    alone = text_string_to_metric_families(single.render()[0].decode())
    assert {family.name for family in merged} == {family.name for family in alone}


def test_multiprocess_queue_depth_is_a_live_sum(multiproc_dir: Path) -> None:
    one, two = two_workers()
    depths = {"one": 3, "two": 4}
    one.set_queue_depth_source(lambda: depths["one"])
    two.set_queue_depth_source(lambda: depths["two"])
    assert value(scrape(one), "otari_usage_writer_queue_depth") == 7

    depths["one"], depths["two"] = 10, 20
    # The scraped worker reads its own depth now; another worker's is as of its last request.
    assert value(scrape(one), "otari_usage_writer_queue_depth") == 14
    observe(two)
    assert value(scrape(one), "otari_usage_writer_queue_depth") == 30

    two.close()
    assert value(scrape(one), "otari_usage_writer_queue_depth") == 10
    assert any(path.name.startswith("gauge_livesum") for path in multiproc_dir.iterdir())


def test_multiprocess_needs_an_existing_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="is not a directory"):
        Metrics(process_identifier=lambda: 103)


def test_multiprocess_mode_does_not_leak_into_other_metrics(
    multiproc_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = values.ValueClass
    observe(Metrics(process_identifier=lambda: 104))
    assert values.ValueClass is saved
    files = sorted(os.listdir(multiproc_dir))
    monkeypatch.delenv(MULTIPROC_DIR_ENV)
    single = Metrics()
    assert single.multiprocess_dir is None
    observe(single, model="single-only")
    assert value(scrape(single), "otari_requests_total", **REQUEST) is None
    assert sorted(os.listdir(multiproc_dir)) == files


WORKER = """
import os
from decimal import Decimal
from prometheus_client import values
from otari_gateway.telemetry import metrics as module
from otari_gateway.usage import Usage

metrics = module.Metrics()
assert module._VALUE_CLASSES[os.getpid] is values.ValueClass  # the library's own files
metrics.set_queue_depth_source(lambda: 2)
metrics.observe_request(surface="chat", provider="openai", model="gpt-4o", status=200,
                        seconds=0.1, usage=Usage(prompt_tokens=3), cost=Decimal("0.01"))
"""


def test_real_worker_processes_are_summed(multiproc_dir: Path) -> None:
    environ = {**os.environ, MULTIPROC_DIR_ENV: str(multiproc_dir)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WORKER], env=environ, check=True, timeout=60)
    samples = scrape(Metrics(process_identifier=lambda: 105))
    assert value(samples, "otari_requests_total", **REQUEST) == 2
    tokens = {"provider": "openai", "model": "gpt-4o"}
    assert value(samples, "otari_tokens_total", kind="prompt", **tokens) == 6
    # Neither worker called close(): a dead worker's depth stays until the directory is reset.
    assert value(samples, "otari_usage_writer_queue_depth") == 4
