"""Trace context from record headers to outputs, and the handled record in JSON log lines."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import orjson

from services.runtime import tracing
from services.runtime.logs import JsonFormatter, RepeatFilter, logging_config

PARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def message(headers: object) -> SimpleNamespace:
    return SimpleNamespace(topic="t", partition=2, offset=41, key=b"C000001", headers=headers)


def test_a_records_trace_is_continued_by_its_outputs_with_a_new_span() -> None:
    with tracing.handling(message([("traceparent", PARENT)])) as current:
        ((name, value),) = tracing.output_headers()
        assert name == "traceparent"
        version, trace, span, flags = value.decode().split("-")
        assert (version, trace, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
        assert span == current.span_id != "00f067aa0ba902b7"
    assert tracing.output_headers() == []


def test_a_record_without_a_valid_trace_starts_one() -> None:
    assert tracing.trace_id_of({"traceparent": b"garbage"}) is None
    assert (
        tracing.trace_id_of([("traceparent", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01")]) is None
    )
    assert tracing.trace_id_of(None) is None
    with tracing.handling(message(None)) as current:
        assert len(current.trace_id) == 32


def record(text: str) -> logging.LogRecord:
    return logging.LogRecord("services.x", logging.WARNING, __file__, 1, text, None, None)


def test_json_log_lines_name_the_handled_record_but_not_the_customer() -> None:
    formatter = JsonFormatter(service="lifecycle")
    outside = orjson.loads(formatter.format(record("starting")))
    assert outside["service"] == "lifecycle" and "topic" not in outside
    with tracing.handling(message([("traceparent", PARENT)])) as current:
        current.event_id = "e-1"
        inside = orjson.loads(formatter.format(record("dead-lettered")))
    assert inside["message"] == "dead-lettered" and inside["level"] == "warning"
    assert (inside["topic"], inside["partition"], inside["offset"]) == ("t", 2, 41)
    assert inside["event_id"] == "e-1" and inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "C000001" not in orjson.dumps(inside).decode() and len(inside["key_hash"]) == 12


def test_text_format_keeps_fausts_logging() -> None:
    assert logging_config("notify", "info", "text") is None
    config = logging_config("notify", "info", "json")
    assert config is not None and config["root"]["level"] == "INFO"


def test_a_kafka_clients_burst_of_identical_errors_is_thinned_with_a_count() -> None:
    thinning = RepeatFilter(window=10.0)

    def record(name: str, at: float, args: tuple[object, ...] = (1,)) -> logging.LogRecord:
        made = logging.LogRecord(
            name, logging.ERROR, "f", 1, "Unable connect to node %s", args, None
        )
        made.created = at
        return made

    burst = [record("aiokafka", 100 + n / 1000) for n in range(3000)]
    passed = [r for r in burst if thinning.filter(r)]
    assert len(passed) == 1
    later = record("aiokafka", 111.0)
    assert thinning.filter(later)
    line = orjson.loads(JsonFormatter("notify").format(later))
    assert line["held_back"] == 2999
    # Rapport's own records (dead letters, decisions) are never thinned.
    own = [record("services.runtime.deadletter", 100 + n / 1000, (n,)) for n in range(50)]
    assert all(thinning.filter(r) for r in own)
