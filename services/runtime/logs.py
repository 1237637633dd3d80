"""Structured logs: one JSON object per line, with the service and, inside a handler, the record
being handled (`tracing.Handling`). RAPPORT_LOG_FORMAT=text gives faust's usual lines instead."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from services.runtime import tracing


class JsonFormatter(logging.Formatter):
    """A log record as JSON: time, level, logger, message, service, the handled record's
    topic, partition, offset, event id, trace id and key hash, and the exception if any."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            entry["service"] = self.service
        current = tracing.CURRENT.get()
        if current is not None:
            entry.update(current.log_fields())
        held_back = getattr(record, "held_back", 0)
        if held_back:
            entry["held_back"] = held_back
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class RepeatFilter(logging.Filter):
    """Lets through the first of a burst of the Kafka clients' records with the same logger
    and message template, then one per `window` seconds, with how many were held back
    (`held_back`). While a broker is down, aiokafka retries in a tight loop and logs thousands
    of identical errors a second; the log stays readable and its volume bounded. Rapport's own
    records always pass: dead letters and decisions are not to be thinned."""

    def __init__(self, window: float = 10.0, prefixes: tuple[str, ...] = ("aiokafka", "faust")):
        super().__init__()
        self.window = window
        self.prefixes = prefixes
        self.bursts: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        burst = self.bursts.get(key)
        if burst is not None and record.created - burst[0] < self.window:
            self.bursts[key] = (burst[0], burst[1] + 1)
            return False
        record.held_back = burst[1] if burst is not None else 0
        self.bursts[key] = (record.created, 0)
        return True


def logging_config(service: str, level: str, fmt: str) -> dict[str, Any] | None:
    """A `logging.config.dictConfig` for a worker; None keeps faust's own text logging."""
    if fmt != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "filters": {"repeats": {"()": RepeatFilter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["repeats"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
