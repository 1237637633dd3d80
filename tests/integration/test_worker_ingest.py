"""A worker on the real broker: valid events are counted, each kind of invalid record lands in
the dead-letter topic with its reason and source position, and the worker keeps going.

This module is the only producer to the input topic in a test session, so counts are exact.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.topics import ACCOUNT_EVENTS, STAGE_CHANGED
from services.runtime.broker import LocalBroker
from tests.integration.stack import RunningWorker, produce, read_all, service_env, worker
from tests.unit.test_account_events import VALID, event

RUN = uuid.uuid4().hex[:6]


def valid_records(prefix: str) -> list[tuple[bytes, bytes]]:
    """One valid event of every type, each for its own customer."""
    records = []
    for n, kind in enumerate(sorted(VALID)):
        customer = f"{prefix}{RUN}{n:02d}"
        data = event(kind, customer_id=customer, event_id=f"{prefix}-{RUN}-{n}")
        records.append((customer.encode(), orjson.dumps(data)))
    return records


def _bad(**overrides: Any) -> bytes:
    return orjson.dumps(event("deposit", customer_id="CBAD", **overrides))


# (key, value, expected reason): one of every kind of bad record the issue names, and more.
INVALID: list[tuple[bytes | None, bytes, str]] = [
    (b"CBAD", b'{"event_id": "x", "event_type": "deposit"', "malformed_json"),
    (b"CBAD", _bad(amount=100.25), "wrong_type"),
    (b"CBAD", _bad(amount=None), "missing_field"),
    (b"CBAD", _bad(event_type="loan.defaulted"), "unknown_event_type"),
    (b"CBAD", _bad(amount="-40.00"), "invalid_value"),
    (b"CBAD", _bad(amount="forty"), "invalid_value"),
    (b"CBAD", b'{"event_id": "\xff\xfe"}', "invalid_utf8"),
    (b"CBAD", b'"just a string"', "not_an_object"),
    (b"SOMEONE-ELSE", _bad(), "key_mismatch"),
    (b"CBAD", _bad(attributes={"blob": "x" * 70_000}), "too_large"),
]


@pytest.fixture(scope="module")
def lifecycle_worker(
    topics: LocalBroker, rapport_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningWorker]:
    """Valid events, then every invalid kind, then valid events again, through one worker."""
    before = valid_records("A")
    after = valid_records("B")
    produce(topics.bootstrap, ACCOUNT_EVENTS.name, before)
    produce(topics.bootstrap, ACCOUNT_EVENTS.name, [(k, v) for k, v, _ in INVALID])
    produce(topics.bootstrap, ACCOUNT_EVENTS.name, after)
    env = service_env(topics, rapport_home)
    with worker("lifecycle", env, tmp_path_factory.mktemp("logs")) as running:
        running.wait_for("rapport_events_consumed_total", len(before) + len(after))
        running.wait_for("rapport_events_dead_lettered_total", len(INVALID))
        yield running


def test_valid_events_of_every_type_reach_the_worker_and_are_counted(
    lifecycle_worker: RunningWorker,
) -> None:
    for kind in VALID:
        # Each type once before the bad records and once after: the worker kept going.
        assert lifecycle_worker.total("rapport_events_consumed_total", event_type=kind) == 2
    assert lifecycle_worker.process.poll() is None


def test_each_invalid_record_is_dead_lettered_with_its_reason(
    lifecycle_worker: RunningWorker, topics: LocalBroker
) -> None:
    dead = read_all(topics.bootstrap, ACCOUNT_EVENTS.dlq)
    assert len(dead) == len(INVALID)
    by_value = {d.value: d for d in dead}
    for key, value, reason in INVALID:
        letter = by_value[value]  # the original bytes, unchanged
        assert letter.key == key
        assert letter.headers["rapport-error-reason"].decode() == reason
        assert letter.headers["rapport-error"], "a reason a person can read"
        assert letter.headers["rapport-service"] == b"lifecycle"
        assert letter.headers["rapport-source-topic"].decode() == ACCOUNT_EVENTS.name
    counted = lifecycle_worker.total("rapport_events_dead_lettered_total")
    assert counted == len(INVALID)


def test_dead_letter_headers_point_at_the_source_record(
    topics: LocalBroker, lifecycle_worker: RunningWorker
) -> None:
    source = {
        (r.partition, r.offset): r.value for r in read_all(topics.bootstrap, ACCOUNT_EVENTS.name)
    }
    for letter in read_all(topics.bootstrap, ACCOUNT_EVENTS.dlq):
        position = (
            int(letter.headers["rapport-source-partition"]),
            int(letter.headers["rapport-source-offset"]),
        )
        assert source[position] == letter.value


def test_readable_reasons_name_the_field(
    topics: LocalBroker, lifecycle_worker: RunningWorker
) -> None:
    reasons = {
        d.headers["rapport-error-reason"].decode(): d.headers["rapport-error"].decode()
        for d in read_all(topics.bootstrap, ACCOUNT_EVENTS.dlq)
    }
    assert "amount" in reasons["wrong_type"]
    assert "loan.defaulted" in reasons["unknown_event_type"]
    assert "customer id" in reasons["key_mismatch"]


def test_rewards_worker_validates_the_envelope_of_output_events(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    good = orjson.dumps(
        {"event_id": "s-1", "type": "stage.changed", "occurred_at": "2026-01-01T00:00:00Z"}
    )
    produce(topics.bootstrap, STAGE_CHANGED.name, [(b"C1", good), (b"C1", b"{oops")])
    with worker("rewards", service_env(topics, rapport_home), tmp_path) as running:
        assert running.wait_for("rapport_events_consumed_total", 1, event_type="stage.changed") == 1
        assert running.wait_for("rapport_events_dead_lettered_total", 1) == 1
    dead = read_all(topics.bootstrap, STAGE_CHANGED.dlq)
    assert [d.value for d in dead] == [b"{oops"]
    assert dead[0].headers["rapport-error-reason"] == b"malformed_json"
