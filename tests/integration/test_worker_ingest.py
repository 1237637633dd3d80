"""The lifecycle worker on the real broker: valid events are counted and acted on, each kind of
invalid record lands in the dead-letter topic with its reason and source position, the worker
keeps going, and time rules fire from the stream's own clock.

This module is the only producer to the input topic in a test session, so counts are exact.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2
from fastapi.testclient import TestClient

from schemas.topics import ACCOUNT_EVENTS, CHURN_SIGNALS, STAGE_CHANGED
from services.runtime.api import load_api
from services.runtime.broker import LocalBroker
from services.runtime.settings import RuntimeSettings
from tests.credentials import ADMIN
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


def _partition(key: str, partitions: int = 6) -> int:
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % partitions)


def scenario_records() -> list[tuple[bytes, bytes]]:
    """Customer L opens, activates, then goes quiet; a neighbour on the same partition keeps
    the partition's clock moving past every deadline, so L's time rules must fire with no event
    of L's. It comes after every other event time in this module, as a live stream would."""
    quiet = f"L{RUN}"
    neighbour = next(
        f"N{RUN}{i}" for i in range(1000) if _partition(f"N{RUN}{i}") == _partition(quiet)
    )
    start = "2026-04-01T09:00:00+00:00"
    records = [("account.opened", quiet, start, {"account_id": "A1"})]
    # Six deposits make a habit: disengagement needs engagement first.
    for day in range(2, 8):
        records.append(
            (
                "deposit",
                quiet,
                f"2026-04-0{day}T09:00:00+00:00",
                {
                    "account_id": "A1",
                    "amount": "100.00",
                    "balance_after": f"{(day - 1) * 100}.00",
                    "currency": "CNY",
                },
            )
        )
    records.append(("account.opened", neighbour, "2027-06-01T09:00:00+00:00", {"account_id": "B"}))
    return [
        (
            customer.encode(),
            orjson.dumps(
                {
                    "event_id": f"{customer}-{n}",
                    "event_type": kind,
                    "occurred_at": at,
                    "customer_id": customer,
                    **fields,
                }
            ),
        )
        for n, (kind, customer, at, fields) in enumerate(records)
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
    produce(topics.bootstrap, ACCOUNT_EVENTS.name, scenario_records())
    env = service_env(topics, rapport_home)
    with worker("lifecycle", env, tmp_path_factory.mktemp("logs")) as running:
        expected = len(before) + len(after) + len(scenario_records())
        # Its own stage changes and signals, which it takes into its history, not counted.
        running.wait_for("rapport_events_consumed_total", expected, topic=ACCOUNT_EVENTS.name)
        running.wait_for("rapport_events_dead_lettered_total", len(INVALID))
        yield running


def test_valid_events_of_every_type_reach_the_worker_and_are_counted(
    lifecycle_worker: RunningWorker,
) -> None:
    extra = {"account.opened": 2, "deposit": 6}  # the scenario's events
    for kind in VALID:
        # Each type once before the bad records and once after: the worker kept going.
        count = lifecycle_worker.total("rapport_events_consumed_total", event_type=kind)
        assert count == 2 + extra.get(kind, 0)
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


def test_rewards_worker_dead_letters_what_is_not_a_stage_change(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    probe = orjson.dumps(
        {"event_id": "s-1", "type": "test.probe", "occurred_at": "2026-01-01T00:00:00Z"}
    )
    produce(topics.bootstrap, STAGE_CHANGED.name, [(b"C1", probe), (b"C1", b"{oops")])
    with worker("rewards", service_env(topics, rapport_home), tmp_path) as running:
        assert running.wait_for("rapport_events_dead_lettered_total", 2) == 2
    dead = read_all(topics.bootstrap, STAGE_CHANGED.dlq)
    reasons = {d.value: d.headers["rapport-error-reason"] for d in dead}
    assert reasons[b"{oops"] == b"malformed_json"
    assert reasons[probe] != b"malformed_json"


def test_time_rules_fire_from_the_partition_clock_without_new_events_of_the_customer(
    lifecycle_worker: RunningWorker, topics: LocalBroker
) -> None:
    customer = f"L{RUN}".encode()
    changes = []
    for _ in range(40):
        changes = [
            orjson.loads(r.value or b"{}")
            for r in read_all(topics.bootstrap, STAGE_CHANGED.name)
            if r.key == customer
        ]
        if len(changes) >= 4:
            break
        lifecycle_worker.wait_for("rapport_events_consumed_total", 10**9, timeout=0.5)
    stages = [(c["stage"], c["occurred_at"][:10]) for c in changes if c["type"] == "stage.changed"]
    assert stages == [
        ("acquisition", "2026-04-01"),
        ("growth", "2026-04-04"),  # the third deposit activates
        ("at_risk", "2026-05-22"),  # 45 days without customer-initiated activity
        ("dormant", "2026-10-04"),  # 180 days
    ]
    signals = [
        orjson.loads(r.value or b"{}")
        for r in read_all(topics.bootstrap, CHURN_SIGNALS.name)
        if r.key == customer
    ]
    assert [(s["type"], s["signal"], s["cause"]) for s in signals][:1] == [
        ("churn_signal.raised", "inactivity", "disengagement")
    ]
    assert len({c["event_id"] for c in changes}) == len(changes)


def test_the_api_serves_the_read_model_the_worker_keeps(
    lifecycle_worker: RunningWorker, topics: LocalBroker, rapport_home: Path
) -> None:
    settings = RuntimeSettings(kafka_bootstrap_servers=topics.bootstrap, home=rapport_home)
    client = TestClient(load_api("lifecycle", settings), headers=ADMIN)
    path = f"/customers/L{RUN}/lifecycle"
    deadline = time.monotonic() + 60
    while (body := client.get(path).json()).get("stage") != "dormant":
        assert time.monotonic() < deadline, f"read model never showed L dormant: {body}"
        time.sleep(0.5)
    assert body["since"].startswith("2026-10-04T09:00")
    assert body["tier"] == "mass"
    assert body["strategy"]["code"] == "win_back"
    assert [(s["signal"], s["cause"]) for s in body["open_signals"]] == [
        ("inactivity", "disengagement")
    ]
    assert body["open_signals"][0]["evidence"]["last_activity_at"].startswith("2026-04-07")
    figures = body["key_figures"]
    assert figures["total_balance"] == "600.00"
    assert figures["open_accounts"] == 1
    assert figures["last_activity_at"].startswith("2026-04-07")

    # The history: every stage change and signal it published, newest first, with the why.
    deadline = time.monotonic() + 60
    while len(entries := client.get(f"{path}/history").json()) < 5:
        assert time.monotonic() < deadline, f"history never showed L's changes: {entries}"
        time.sleep(0.5)
    stages = [(e["stage"], e["occurred_at"][:10]) for e in entries if e["type"] == "stage.changed"]
    assert stages == [
        ("dormant", "2026-10-04"),
        ("at_risk", "2026-05-22"),
        ("growth", "2026-04-04"),
        ("acquisition", "2026-04-01"),
    ]
    raised = next(e for e in entries if e["type"] == "churn_signal.raised")
    assert (raised["signal"], raised["cause"]) == ("inactivity", "disengagement")
    assert raised["evidence"]["last_activity_at"].startswith("2026-04-07")
    assert raised["explanation"]["zh-CN"]
    at_risk = next(e for e in entries if e["stage"] == "at_risk")
    assert at_risk["previous_stage"] == "growth"
    assert at_risk["probable_cause"] == "disengagement"
    assert client.get("/customers/NOBODY/lifecycle/history").json() == []
    # Other modules' workers write the same database: its months are theirs too.
    monthly = client.get("/lifecycle/summary/monthly").json()
    assert len(monthly) == 12
    assert [m["month"] for m in monthly] == sorted(m["month"] for m in monthly)
    for month in monthly:
        cells = month["by_stage_and_tier"].values()
        assert sum(n for tiers in cells for n in tiers.values()) == month["customers"]

    missing = client.get("/customers/NOBODY/lifecycle")
    assert missing.status_code == 404
    assert "NOBODY" in missing.json()["detail"]
    assert client.get("/customers/not%20an%20id/lifecycle").status_code == 422

    summary = client.get("/lifecycle/summary").json()
    assert summary["by_stage"]["dormant"] >= 1
    assert sum(summary["by_stage"].values()) == summary["customers"]
    assert sum(summary["by_tier"].values()) == summary["customers"]
    gauge = 'rapport_lifecycle_customers{stage="dormant",tier="mass"}'
    line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith(gauge))
    assert float(line.split()[-1]) == summary["by_stage_and_tier"]["dormant"]["mass"]
