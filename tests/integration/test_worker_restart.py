"""A lifecycle worker killed with SIGKILL mid-stream and restarted, several times, and a worker
whose broker stops and starts again mid-stream, produce the same stage changes and churn signals
as an uninterrupted worker on the same input.

Both runs read the whole input topic, so this module runs after test_worker_ingest (whose counts
assume it is the only producer so far) and adds its own population first."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path

import orjson
import pytest

from schemas.topics import ACCOUNT_EVENTS, CHURN_SIGNALS, STAGE_CHANGED
from services.runtime.broker import LocalBroker
from services.runtime.produce import records_from_lines
from services.runtime.settings import RuntimeSettings
from services.simulator.simulate import simulate
from tests.integration.stack import (
    assert_same_events,
    end_offsets,
    produce,
    records_since,
    service_env,
    wait_until_consumed,
    worker,
)

OUTPUTS = (STAGE_CHANGED.name, CHURN_SIGNALS.name)


def outputs_of_one_run(
    topics: LocalBroker,
    home: Path,
    logs: Path,
    kills: list[int],
    broker_restart_after: int | None = None,
    store: str = "memory",
    stops: Iterable[bool] = (),
) -> tuple[dict[str, bytes], int]:
    """Run a fresh worker group over the whole input, with its states in `store`, SIGKILLing it
    after each number of events in `kills` (counted from its restart; stopping it cleanly
    instead where `stops` says True), and, in its last run, stopping and restarting the broker
    after `broker_restart_after` events; return its outputs by event_id and how many records it
    wrote in all (duplicates included)."""
    instance = uuid.uuid4().hex[:8]
    env = service_env(topics, home, instance) | {"RAPPORT_LIFECYCLE_STORE": store}
    group = RuntimeSettings(instance=instance).app_id("lifecycle")
    marks = {topic: end_offsets(topics.bootstrap, topic) for topic in OUTPUTS}
    for after, clean in zip_longest(kills, stops, fillvalue=False):
        with worker("lifecycle", env, logs) as running:
            running.wait_for("rapport_events_consumed_total", after)
            if not clean:
                running.process.kill()  # SIGKILL: no shutdown, no final commit, no flush
                running.process.wait()
    with worker("lifecycle", env, logs) as running:
        if broker_restart_after is not None:
            running.wait_for("rapport_events_consumed_total", broker_restart_after)
            topics.stop()
            time.sleep(5)  # the worker's connections fail meanwhile
            topics.start(timeout=120)
            before_restart = running.total("rapport_events_consumed_total")
        wait_until_consumed(topics.bootstrap, group, ACCOUNT_EVENTS.name, running, timeout=300)
        if broker_restart_after is not None:
            # It went on after the broker came back, in the same process.
            assert running.total("rapport_events_consumed_total") > before_restart
    records = [r for topic in OUTPUTS for r in records_since(topics.bootstrap, topic, marks[topic])]
    by_id = {orjson.loads(r.value or b"{}")["event_id"]: r.value or b"" for r in records}
    return by_id, len(records)


@pytest.fixture(scope="module")
def reference(
    topics: LocalBroker, rapport_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """The outputs of an uninterrupted worker over a population added for this module."""
    # After the feeds of the earlier modules, so that each partition moves forward in time.
    sample = simulate(
        customers=150,
        days=400,
        seed=11,
        invalid_share=0.005,
        start=datetime(2029, 6, 1, tzinfo=UTC),
    )
    produce(
        topics.bootstrap,
        ACCOUNT_EVENTS.name,
        [(r.key, r.value) for r in records_from_lines(sample.lines)],
    )
    outputs, _ = outputs_of_one_run(
        topics, rapport_home, tmp_path_factory.mktemp("reference"), kills=[]
    )
    assert len(outputs) > 500, "the population should produce a real stream of outputs"
    return outputs


def assert_same_outputs(reference: dict[str, bytes], got: dict[str, bytes]) -> None:
    assert_same_events(
        {k: orjson.loads(v) for k, v in reference.items()},
        {k: orjson.loads(v) for k, v in got.items()},
        of="an uninterrupted run",
    )


def test_killed_and_restarted_worker_equals_an_uninterrupted_one(
    reference: dict[str, bytes], topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    rng = random.Random(5)
    kills = [rng.randrange(300, 2500) for _ in range(3)]
    restarted, written = outputs_of_one_run(topics, rapport_home, tmp_path, kills=kills)
    assert_same_outputs(reference, restarted)
    # Replays after a kill re-send some outputs with the same event_id; consumers dedupe them.
    assert written >= len(reference)
    # Each restart read its states back from the changelog in batches, not through faust's
    # record-at-a-time reader (services/runtime/faust_recovery.py).
    assert len([records for records in read_back(tmp_path) if records > 0]) >= len(kills)


def test_a_broker_restart_mid_stream_changes_nothing(
    reference: dict[str, bytes], topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    """The broker stops for a few seconds while the worker runs: the worker reconnects by
    itself and finishes with the uninterrupted run's outputs."""
    survived, _ = outputs_of_one_run(
        topics, rapport_home, tmp_path, kills=[], broker_restart_after=1500
    )
    assert_same_outputs(reference, survived)


def test_a_worker_with_its_states_on_local_disk_equals_one_in_memory(
    reference: dict[str, bytes], topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    """RocksDB stores: kept after a clean stop (the restart reads only the changelog past
    them), removed after a kill (rebuilt from the changelog, which may lack the last writes the
    store had); the outputs are those of an uninterrupted worker in memory either way."""
    restarted, _ = outputs_of_one_run(
        topics,
        rapport_home,
        tmp_path,
        kills=[900, 700, 600],
        store="rocksdb",
        stops=[True, False, True],
    )
    assert_same_outputs(reference, restarted)
    (log,) = tmp_path.glob("worker-lifecycle-*.log")
    said = log.read_text()
    # Kept at the restarts after the two clean stops; removed at the one after the kill.
    assert said.count("local table stores kept") == 2
    assert said.count("local table stores removed") == 1
    # The removed store was rebuilt by reading the changelog in batches (faust_recovery.py).
    assert any(records > 0 for records in read_back(tmp_path))


def read_back(logs: Path) -> list[int]:
    """The records each start of the worker read back from the changelog into its table, as
    its log says (services/runtime/faust_recovery.py)."""
    (log,) = logs.glob("worker-lifecycle-*.log")
    return [int(n) for n in re.findall(r"changelog read back: (\d+) records", log.read_text())]
