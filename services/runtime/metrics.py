"""Metrics every service exposes, and the /metrics endpoint of a worker process.

Label values come from bounded sets (service, topic, event type, reason code): never a customer
id, an event id or free text, so the series count stays fixed however many customers there are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka.errors import KafkaError
from faust.exceptions import NotReady
from prometheus_client import (
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# The _created series double every counter for no use on a dashboard.
disable_created_metrics()  # type: ignore[no-untyped-call]

EVENTS_CONSUMED = Counter(
    "rapport_events_consumed_total",
    "Valid events a service accepted, by input topic and event type.",
    ["service", "topic", "event_type"],
)
EVENTS_DEAD_LETTERED = Counter(
    "rapport_events_dead_lettered_total",
    "Records a service sent to a dead-letter topic, by source topic and reason code.",
    ["service", "topic", "reason"],
)
PROCESSING_DELAY = Histogram(
    "rapport_processing_delay_seconds",
    "From a record's arrival on its topic (broker time) to the end of its handling, outputs "
    "acknowledged.",
    ["service", "topic"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600),
)
EVENT_AGE = Histogram(
    "rapport_event_age_seconds",
    "From an event's own time (occurred_at) to the end of its handling: how fresh what the "
    "services act on is (large during a replay of history).",
    ["service", "topic"],
    buckets=(1, 10, 60, 300, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400),
)
HTTP_REQUESTS = Counter(
    "rapport_http_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["service", "method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "rapport_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


Samples = list[tuple[tuple[str, ...], float]]


class ReadModelGauge(Collector):
    """A gauge read from a database when scraped (so it is right after any restart), at most
    once per `max_age` seconds. Every API replica reports the same values: aggregate them with
    max(), not sum(). `read` returns (label values, value) pairs."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: list[str],
        read: Callable[[], Samples],
        max_age: float = 10.0,
    ) -> None:
        self._name, self._documentation, self._labels = name, documentation, labels
        self._read, self._max_age = read, max_age
        self._cached: Samples = []
        self._at = -max_age

    def use(self, read: Callable[[], Samples]) -> None:
        """Read from another source from now on (the newest API of the process)."""
        self._read, self._at = read, -self._max_age

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if time.monotonic() - self._at >= self._max_age:
            try:
                self._cached, self._at = self._read(), time.monotonic()
            except Exception:
                log.warning("cannot read %s", self._name, exc_info=True)
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, value in self._cached:
            family.add_metric(list(labels), value)
        yield family


_read_model_gauges: dict[str, ReadModelGauge] = {}


def read_model_gauge(
    name: str, documentation: str, labels: list[str], read: Callable[[], Samples]
) -> ReadModelGauge:
    """The process's gauge of this name, registered once and reading from `read` from now on
    (the registry refuses a second collector of the same name)."""
    gauge = _read_model_gauges.get(name)
    if gauge is None:
        gauge = _read_model_gauges[name] = ReadModelGauge(name, documentation, labels, read)
        REGISTRY.register(gauge)
    else:
        gauge.use(read)
    return gauge


REBALANCES = Counter(
    "rapport_consumer_rebalances_total",
    "Consumer-group rebalances this worker went through (partitions moved in or out).",
    ["service"],
)


class WorkerProgress(Collector):
    """Computed when scraped, per faust app (one per worker process):

    - `rapport_consumer_lag_records{service,topic,partition}`: for each input partition this
      worker holds, the records not handled yet (its end offset minus the next record due);
    - `rapport_table_recovery_remaining_records{service}` and `..._in_progress{service}`: the
      changelog records a recovering worker still has to read back into its tables before it
      takes input again (0 and 0 once ready)."""

    def __init__(self) -> None:
        self._apps: list[tuple[str, Any]] = []

    def watch(self, service: str, app: Any) -> None:
        self._apps.append((service, app))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "rapport_consumer_lag_records",
            "Records of each held input partition not handled yet.",
            labels=["service", "topic", "partition"],
        )
        remaining = GaugeMetricFamily(
            "rapport_table_recovery_remaining_records",
            "Changelog records still to read back into the worker's tables.",
            labels=["service"],
        )
        recovering = GaugeMetricFamily(
            "rapport_table_recovery_in_progress",
            "1 while the worker rebuilds its tables from their changelogs, else 0.",
            labels=["service"],
        )
        for service, app in self._apps:
            for tp, due in list(app.rapport_handled.next.items()):
                try:
                    end = app.consumer.highwater(tp)
                except (KafkaError, NotReady):  # revoked meanwhile, or the consumer restarts
                    continue
                if end is not None:
                    lag.add_metric([service, tp.topic, str(tp.partition)], max(end - due, 0))
            # Not `app.tables.recovery`: that property would build the recovery service of an
            # app that has not started it (or has no tables).
            recovery: Any = getattr(app.tables, "_recovery", None)
            in_recovery = recovery is not None and bool(recovery.in_recovery)
            left = 0
            if in_recovery:
                try:
                    left = max(recovery.active_remaining_total(), 0)
                except (KeyError, TypeError):  # offsets of a partition not fetched yet
                    left = 0
            recovering.add_metric([service], 1.0 if in_recovery else 0.0)
            remaining.add_metric([service], left)
        yield lag
        yield remaining
        yield recovering


WORKER_PROGRESS = WorkerProgress()
REGISTRY.register(WORKER_PROGRESS)


def serve_metrics(port: int, host: str) -> None:
    """Expose this process's registry at http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)
