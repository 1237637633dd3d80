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
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(service: str, level: str, fmt: str) -> dict[str, Any] | None:
    """A `logging.config.dictConfig` for a worker; None keeps faust's own text logging."""
    if fmt != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
