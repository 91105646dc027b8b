"""Prometheus metrics: one ``Metrics`` per process, on its own ``CollectorRegistry``.

What is counted (all names start with ``otari_``):

- ``otari_requests_total{surface,provider,model,status}`` and
  ``otari_request_duration_seconds{surface,provider}`` (buckets 5 ms … 300 s);
- ``otari_tokens_total{provider,model,kind}`` with ``kind`` one of ``prompt`` (every input
  token, cached ones included), ``completion``, ``cache_read``, ``cache_write``;
- ``otari_cost_usd_total{provider,model}`` (a float: fine for a metric, never for billing);
- ``otari_budget_refusals_total{scope=user|key}``,
  ``otari_rate_limit_hits_total{scope=global|key}``;
- ``otari_usage_writer_queue_depth``: usage records waiting for the database.

Labels stay bounded: never key, user or request ids. ``status`` is the exact code when it is
one the gateway answers with (``KNOWN_STATUSES``), else its class (``"4xx"``); a missing
provider or model (the request never routed) is ``"none"``; after ``max_models`` distinct
``(provider, model)`` pairs — other models still route, so clients can invent names — new
pairs are counted as model ``"other"``. ``surface`` must come from a closed set (the
``Surface`` enum).

Several workers (``otari serve --workers N``): each worker is a process with its own
counters and a scrape reaches one of them. For metrics of the whole deployment, set
``PROMETHEUS_MULTIPROC_DIR`` to an **empty** directory, one per deployment, cleared at each
start (stale files from an earlier run would be added in). With it set, every worker writes
its values to files there (prometheus_client's multiprocess mode) and any worker's
``/metrics`` answers the sum over all of them; without it, each scrape reports only the
worker that answered. In that mode the queue depth is a ``livesum`` gauge that each worker
writes when it observes a request (and when it is scraped), since ``Gauge.set_function``
does not work across processes; ``close()`` at shutdown drops the worker's share. A worker
that dies without ``close()`` keeps its last queue depth in the sum until the directory is
cleared. In that mode create exactly one ``Metrics`` per process: two in one process share
its files and overwrite each other's counts.

prometheus_client picks its value storage from the environment once, when it is first
imported; this module binds the storage per ``Metrics`` instead (see ``_bind``), so the mode
follows ``PROMETHEUS_MULTIPROC_DIR`` as it is when ``Metrics`` is created.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Final, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from otari_gateway.usage import Usage

MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0,
)  # fmt: skip

# The codes the gateway itself answers with (errors.py, 499 for a client that left);
# anything else is reported by class.
KNOWN_STATUSES: Final = frozenset(
    {200, 400, 401, 402, 403, 404, 408, 409, 413, 422, 429, 499, 500, 502, 503, 504}
)
TOKEN_KINDS: Final = ("prompt", "completion", "cache_read", "cache_write")
BUDGET_SCOPES: Final = ("user", "key")
RATE_LIMIT_SCOPES: Final = ("global", "key")
NONE: Final = "none"
OTHER: Final = "other"
DEFAULT_MAX_MODELS: Final = 200
# Raw label tuples remembered for the fast path; past this, lookups take the slow path.
_MAX_CACHED_SERIES: Final = 4096

M = TypeVar("M", bound=MetricWrapperBase)


def status_label(status: int) -> str:
    """The exact code when it is a known one, else its class: ``"2xx"``, ``"4xx"`` …"""
    return str(status) if status in KNOWN_STATUSES else f"{status // 100}xx"


# prometheus_client reads the module global ``values.ValueClass`` whenever it creates a
# labelled child. Swapping it under this lock while our child is made gives each Metrics its
# own storage without changing what any other metric in the process uses.
_SWAP = threading.Lock()
_VALUE_CLASSES: dict[Callable[[], int], Any] = {}


def _value_class(multiprocess: bool, process_identifier: Callable[[], int]) -> Any:
    if not multiprocess:
        return values.MutexValue
    found = _VALUE_CLASSES.get(process_identifier)
    if found is None:
        if process_identifier is os.getpid and getattr(values.ValueClass, "_multiprocess", False):
            # The variable was set before prometheus_client was imported: share its files.
            found = values.ValueClass
        else:
            found = values.MultiProcessValue(process_identifier)  # type: ignore[no-untyped-call]
        _VALUE_CLASSES[process_identifier] = found
    return found


def _bind(base: type[M], value_class: Any) -> type[M]:
    """A subclass of ``base`` whose children store their values in ``value_class``."""
    parent_init: Callable[[Any], None] = base._metric_init

    def _metric_init(self: Any) -> None:
        with _SWAP:
            saved = values.ValueClass
            values.ValueClass = value_class
            try:
                parent_init(self)
            finally:
                values.ValueClass = saved

    return cast("type[M]", type(base.__name__, (base,), {"_metric_init": _metric_init}))


class _WithoutCreated:
    """The registry's samples minus the ``*_created`` ones, which the text format exposes
    as one extra series per label set (and multiprocess mode never has)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        for metric in self._source.collect():  # fresh Metric objects on every collect
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class _Series:
    """Every child one (surface, provider, model, status) touches, resolved once."""

    __slots__ = (
        "cache_read",
        "cache_write",
        "completion",
        "cost",
        "duration",
        "prompt",
        "requests",
    )

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str, str]) -> None:
        surface, provider, model, status = labels
        self.requests: Counter = metrics.requests.labels(surface, provider, model, status)
        self.duration: Histogram = metrics.duration.labels(surface, provider)
        tokens = metrics.tokens
        self.prompt: Counter = tokens.labels(provider, model, "prompt")
        self.completion: Counter = tokens.labels(provider, model, "completion")
        self.cache_read: Counter = tokens.labels(provider, model, "cache_read")
        self.cache_write: Counter = tokens.labels(provider, model, "cache_write")
        self.cost: Counter = metrics.cost.labels(provider, model)


class Metrics:
    """The gateway's metrics; create one per process and share it.

    ``process_identifier`` names this process's files in multiprocess mode (default: the
    pid); tests pass distinct ones to stand for several processes.
    """

    def __init__(
        self,
        *,
        max_models: int = DEFAULT_MAX_MODELS,
        process_identifier: Callable[[], int] = os.getpid,
    ) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_DIR_ENV) or None
        multiprocess = self.multiprocess_dir is not None
        if self.multiprocess_dir is not None and not os.path.isdir(self.multiprocess_dir):
            raise ValueError(
                f"{MULTIPROC_DIR_ENV}={self.multiprocess_dir!r} is not a directory: create an "
                "empty one for this deployment, or unset the variable"
            )
        value_class = _value_class(multiprocess, process_identifier)
        self._process_identifier = process_identifier
        self._max_models = max_models
        self._models: set[tuple[str, str]] = set()
        self._series: dict[tuple[str, str | None, str | None, int], _Series] = {}
        # Multiprocess mode only: the queue-depth source, pushed to the file on observe.
        self._depth_push: Callable[[], int] | None = None
        self._last_depth = -1
        self.registry = registry = CollectorRegistry(auto_describe=True)
        counter, histogram, gauge = (
            _bind(Counter, value_class),
            _bind(Histogram, value_class),
            _bind(Gauge, value_class),
        )
        self.requests = counter(
            "otari_requests",
            "Requests that reached the pipeline, by surface, provider, model and status.",
            ("surface", "provider", "model", "status"),
            registry=registry,
        )
        self.duration = histogram(
            "otari_request_duration_seconds",
            "Time from receiving a request to settling it (streams: until the last event).",
            ("surface", "provider"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tokens = counter(
            "otari_tokens",
            "Tokens reported by providers; prompt counts every input token, cached included.",
            ("provider", "model", "kind"),
            registry=registry,
        )
        self.cost = counter(
            "otari_cost_usd",
            "Cost charged for requests, in US dollars.",
            ("provider", "model"),
            registry=registry,
        )
        self.budget_refusals = counter(
            "otari_budget_refusals",
            "Requests refused because a budget was exhausted, by whose budget.",
            ("scope",),
            registry=registry,
        )
        self.rate_limit_hits = counter(
            "otari_rate_limit_hits",
            "Requests refused by the gateway's rate limits, by limit scope.",
            ("scope",),
            registry=registry,
        )
        self.queue_depth = gauge(
            "otari_usage_writer_queue_depth",
            "Usage records waiting to be written to the database.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._budget = {scope: self.budget_refusals.labels(scope) for scope in BUDGET_SCOPES}
        self._rate = {scope: self.rate_limit_hits.labels(scope) for scope in RATE_LIMIT_SCOPES}
        self._exposed: Collector = _WithoutCreated(registry)
        if self.multiprocess_dir is not None:
            # Every worker's files, this one's included; the registry above only writes.
            self._exposed = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self._exposed, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def observe_request(
        self,
        *,
        surface: str,
        provider: str | None,
        model: str | None,
        status: int,
        seconds: float,
        usage: Usage | None,
        cost: Decimal,
    ) -> None:
        """Count one finished request: once per request, with what it was billed."""
        key = (surface, provider, model, status)
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        series.requests.inc()
        series.duration.observe(seconds)
        if usage is not None:
            if usage.prompt_tokens > 0:
                series.prompt.inc(usage.prompt_tokens)
            if usage.completion_tokens > 0:
                series.completion.inc(usage.completion_tokens)
            if usage.cache_read_tokens > 0:
                series.cache_read.inc(usage.cache_read_tokens)
            if usage.cache_write_tokens > 0:
                series.cache_write.inc(usage.cache_write_tokens)
        if cost > 0:
            series.cost.inc(float(cost))
        if self._depth_push is not None:
            self._push_depth(self._depth_push)

    def _new_series(self, key: tuple[str, str | None, str | None, int]) -> _Series:
        surface, provider, model, status = key
        pair = (provider or NONE, model or NONE)
        if pair not in self._models:
            if len(self._models) < self._max_models:
                self._models.add(pair)
            else:
                pair = (pair[0], OTHER)
        series = _Series(self, (surface, pair[0], pair[1], status_label(status)))
        if len(self._series) < _MAX_CACHED_SERIES:
            self._series[key] = series
        return series

    def budget_refused(self, scope: str) -> None:
        """A budget hold was refused; ``scope`` is ``"user"`` or ``"key"``."""
        child = self._budget.get(scope)
        if child is None:
            child = self.budget_refusals.labels(OTHER)
        child.inc()

    def rate_limited(self, scope: str) -> None:
        """A gateway rate limit refused a request; ``scope`` is ``"global"`` or ``"key"``.

        The limiter's own scope names (``"key:<id>"``) are accepted and reduced to ``"key"``.
        """
        child = self._rate.get(scope.partition(":")[0])
        if child is None:
            child = self.rate_limit_hits.labels(OTHER)
        child.inc()

    def set_queue_depth_source(self, fn: Callable[[], int]) -> None:
        """Where the usage writer's queue depth is read: at scrape time, or (multiprocess
        mode) on every observed request and scrape."""
        if self.multiprocess_dir is None:
            self.queue_depth.set_function(lambda: float(fn()))
        else:
            self._depth_push = fn
            self._push_depth(fn)

    def _push_depth(self, fn: Callable[[], int]) -> None:
        depth = fn()
        if depth != self._last_depth:  # a file write costs more than the comparison
            self._last_depth = depth
            self.queue_depth.set(depth)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if self._depth_push is not None:
            self._push_depth(self._depth_push)
        return generate_latest(self._exposed), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """At shutdown: in multiprocess mode, drop this process's queue-depth share."""
        if self.multiprocess_dir is not None:
            mark_process_dead(self._process_identifier(), self.multiprocess_dir)  # type: ignore[no-untyped-call]
