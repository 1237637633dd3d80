"""Metrics every service exposes, and the /metrics endpoint of a worker process.

Label values come from bounded sets (service, topic, event type, reason code): never a customer
id, an event id or free text, so the series count stays fixed however many customers there are.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

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


def serve_metrics(port: int, host: str) -> None:
    """Expose this process's registry at http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)
