"""A lifecycle worker killed with SIGKILL mid-stream and restarted, several times, produces the
same stage changes and churn signals as an uninterrupted worker on the same input.

Both runs read the whole input topic, so this module runs after test_worker_ingest (whose counts
assume it is the only producer so far) and adds its own population first."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

from schemas.topics import ACCOUNT_EVENTS, CHURN_SIGNALS, STAGE_CHANGED
from services.runtime.broker import LocalBroker
from services.runtime.produce import records_from_lines
from services.runtime.settings import RuntimeSettings
from services.simulator.simulate import simulate
from tests.integration.stack import (
    end_offsets,
    produce,
    records_since,
    service_env,
    wait_until_consumed,
    worker,
)

OUTPUTS = (STAGE_CHANGED.name, CHURN_SIGNALS.name)


def outputs_of_one_run(
    topics: LocalBroker, home: Path, logs: Path, kills: list[int]
) -> tuple[dict[str, bytes], int]:
    """Run a fresh worker group over the whole input, SIGKILLing it after each number of events
    in `kills` (counted from its restart); return its outputs by event_id and how many records
    it wrote in all (duplicates included)."""
    instance = uuid.uuid4().hex[:8]
    env = service_env(topics, home, instance)
    group = RuntimeSettings(instance=instance).app_id("lifecycle")
    marks = {topic: end_offsets(topics.bootstrap, topic) for topic in OUTPUTS}
    for after in kills:
        with worker("lifecycle", env, logs) as running:
            running.wait_for("rapport_events_consumed_total", after)
            running.process.kill()  # SIGKILL: no shutdown, no final commit, no flush
            running.process.wait()
    with worker("lifecycle", env, logs) as running:
        wait_until_consumed(topics.bootstrap, group, ACCOUNT_EVENTS.name, running)
    records = [r for topic in OUTPUTS for r in records_since(topics.bootstrap, topic, marks[topic])]
    by_id = {orjson.loads(r.value or b"{}")["event_id"]: r.value or b"" for r in records}
    return by_id, len(records)


def test_killed_and_restarted_worker_equals_an_uninterrupted_one(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
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
    reference, _ = outputs_of_one_run(topics, rapport_home, tmp_path, kills=[])
    assert len(reference) > 500, "the population should produce a real stream of outputs"

    rng = random.Random(5)
    kills = [rng.randrange(300, 2500) for _ in range(3)]
    restarted, written = outputs_of_one_run(topics, rapport_home, tmp_path, kills=kills)

    missing = reference.keys() - restarted.keys()
    extra = restarted.keys() - reference.keys()
    lost = sorted(orjson.loads(reference[k]) for k in missing)
    assert not missing, f"{len(missing)} outputs lost, e.g. " + "; ".join(
        f"{o['customer_id']} {o['type']} {o['occurred_at']}" for o in lost[:8]
    )
    assert not extra, f"{len(extra)} outputs that an uninterrupted run does not make"
    differing = [k for k in reference if reference[k] != restarted[k]]
    assert not differing, f"{len(differing)} outputs differ, e.g. {differing[:3]}"
    # Replays after a kill re-send some outputs with the same event_id; consumers dedupe them.
    assert written >= len(reference)
