"""Metrics every service exposes, and the /metrics endpoint of a worker process.

Label values come from bounded sets (service, topic, event type, reason code): never a customer
id, an event id or free text, so the series count stays fixed however many customers there are.
"""

from __future__ import annotations

from collections.abc import Iterator
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


REBALANCES = Counter(
    "rapport_consumer_rebalances_total",
    "Consumer-group rebalances this worker went through (partitions moved in or out).",
    ["service"],
)


class ConsumerLag(Collector):
    """`rapport_consumer_lag_records{service,topic,partition}`: for each input partition this
    worker holds, the records not handled yet (the partition's end offset minus the next record
    due), computed when scraped."""

    def __init__(self) -> None:
        self._apps: list[tuple[str, Any]] = []

    def watch(self, service: str, app: Any) -> None:
        """Report the partitions of a faust app (one per worker process)."""
        self._apps.append((service, app))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "rapport_consumer_lag_records",
            "Records of each held input partition not handled yet.",
            labels=["service", "topic", "partition"],
        )
        for service, app in self._apps:
            for tp, due in list(app.rapport_handled.next.items()):
                try:
                    end = app.consumer.highwater(tp)
                except (KafkaError, NotReady):  # revoked meanwhile, or the consumer restarts
                    continue
                if end is not None:
                    family.add_metric([service, tp.topic, str(tp.partition)], max(end - due, 0))
        yield family


CONSUMER_LAG = ConsumerLag()
REGISTRY.register(CONSUMER_LAG)


def serve_metrics(port: int, host: str) -> None:
    """Expose this process's registry at http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)
