"""The referral worker on the real broker: a simulated population's conversions are attributed
to their true introducers, the planted fraud is caught, and two workers give exactly the same
referral events as one (leads aggregate by counterparty through an internal topic, so the
answer does not depend on which worker holds which customer).

Runs after test_worker_ingest (whose counts assume it is the only producer so far). Input that
is out of event-time order by more than the allowed lateness within a partition is applied as
it comes (docs/referral.md), and the earlier modules' feeds are: test_worker_redaction's, dated
2025, follows test_worker_ingest's of 2026 and 2027. So this module's groups start at its own
feed, as an operator starts a group from a position, and the feed is dated after every event
written before it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from schemas.topics import ACCOUNT_EVENTS, REFERRAL_EVENTS
from services.referral import read_model
from services.runtime import db, readback
from services.runtime.broker import LocalBroker
from services.runtime.produce import records_from_lines
from services.runtime.settings import RuntimeSettings
from services.simulator.simulate import Simulation, simulate
from tests.integration.stack import (
    METRICS_PORT_BASE,
    assert_same_events,
    end_offsets,
    produce,
    prometheus,
    records_since,
    service_env,
    wait_until_consumed,
    worker,
)

# Seconds without records before an input partition is idle (RAPPORT_IDLE_PARTITION_SECONDS).
IDLE = 2


@dataclass(frozen=True)
class Feed:
    simulation: Simulation
    # The input's offsets before the feed.
    start: dict[int, int]


def referral_events_of_a_run(
    topics: LocalBroker, home: Path, logs: Path, feed: Feed, workers: int, limit: float = 240
) -> dict[str, dict[str, object]]:
    """Run a fresh referral group of `workers` processes over the feed until it and its
    internal topics are drained; return its referral events by event id."""
    instance = uuid.uuid4().hex[:8]
    # Each input partition is idle soon after its last record, and its last days released:
    # the run ends with every link and candidate decided (with the default 30 s, a run that
    # settled sooner ended without the last day's leads, one that took longer with them).
    env = {**service_env(topics, home, instance), "RAPPORT_IDLE_PARTITION_SECONDS": str(IDLE)}
    group = RuntimeSettings(instance=instance).app_id("referral")
    asyncio.run(readback.start_group_at(topics.bootstrap, group, ACCOUNT_EVENTS.name, feed.start))
    internal = [f"{group}-links", f"{group}-steps"]
    mark = end_offsets(topics.bootstrap, REFERRAL_EVENTS.name)
    with ExitStack() as stack:
        running = [
            stack.enter_context(
                worker(
                    "referral",
                    {**env, "RAPPORT_METRICS_PORT_BASE": str(METRICS_PORT_BASE + 10 * n)},
                    logs,
                )
            )
            for n in range(workers)
        ]
        # Steps make more steps: wait until a whole pass over every topic finds nothing new,
        # longer after the last than a partition takes to be found idle (its marks are
        # records on the internal topics).
        before: list[dict[int, int]] = []
        deadline = time.monotonic() + limit
        while True:
            for topic in (ACCOUNT_EVENTS.name, *internal):
                left = max(deadline - time.monotonic(), 1)
                wait_until_consumed(topics.bootstrap, group, topic, running[0], timeout=left)
            after = [end_offsets(topics.bootstrap, t) for t in (*internal, REFERRAL_EVENTS.name)]
            if after == before:
                break
            assert time.monotonic() < deadline, "the referral steps never settled"
            before = after
            time.sleep(IDLE + 3)
        records = records_since(topics.bootstrap, REFERRAL_EVENTS.name, mark)
        if workers == 1:
            # Prometheus counts each referral event type as often as it is on the topic.
            published = Counter(orjson.loads(r.value or b"{}")["type"] for r in records)
            with prometheus(running, logs) as server:
                for kind in ("referral.attributed", "referral.qualified", "referral.rejected"):
                    promql = f'sum(rapport_referral_referrals_total{{type="{kind}"}})'
                    assert published[kind] > 0
                    assert server.wait_for(promql, at_least=published[kind]) == published[kind]
                leads = server.query('sum(rapport_referral_leads_total{change="detected"})')
                assert leads == published["lead.detected"] > 0
    return {(e := orjson.loads(r.value or b"{}"))["event_id"]: e for r in records}


@pytest.fixture(scope="module")
def feed(topics: LocalBroker, rapport_home: Path) -> Feed:
    # After every event test_worker_ingest wrote (up to 2027): each input partition then moves
    # forward in event time, as a core bank's feed does, and the watermarks can order the links.
    simulation = simulate(customers=150, days=365, seed=8, start=datetime(2028, 1, 1, tzinfo=UTC))
    truth = simulation.truth
    url = RuntimeSettings(home=rapport_home).resolved_database_url
    db.upgrade(url)
    read_model.register_codes(
        url, truth.codes, truth.start - timedelta(days=1), timedelta(days=365)
    )
    start = end_offsets(topics.bootstrap, ACCOUNT_EVENTS.name)
    produce(
        topics.bootstrap,
        ACCOUNT_EVENTS.name,
        [(r.key, r.value) for r in records_from_lines(simulation.lines)],
    )
    return Feed(simulation, start)


@pytest.fixture(scope="module")
def one_worker(
    feed: Feed,
    topics: LocalBroker,
    rapport_home: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, object]]:
    logs = tmp_path_factory.mktemp("one")
    return referral_events_of_a_run(topics, rapport_home, logs, feed, workers=1)


def test_referrals_match_the_truth(feed: Feed, one_worker: dict[str, dict[str, object]]) -> None:
    truth = feed.simulation.truth
    events = one_worker.values()
    # The group started at the feed: nothing of the earlier modules' input.
    assert min(str(e["occurred_at"]) for e in events) >= "2028"
    attributed = {e["referee"]: e["referrer"] for e in events if e["type"] == "referral.attributed"}
    assert truth.conversions
    assert {c.customer_id: c.introduced_by for c in truth.conversions}.items() <= attributed.items()
    assert any(e["type"] == "lead.detected" for e in events)
    # A shared device found only after the referee qualified reverses the referral instead.
    rejected_or_held = {
        e["referee"]
        for e in events
        if e["type"] in ("referral.rejected", "referral.held")
        or (e["type"] == "referral.reversed" and e.get("reason_code") != "early_exit")
    }
    for case in truth.fraud:
        assert set(case.referees) & rejected_or_held, case.pattern


def test_two_workers_give_the_same_referral_events_as_one(
    feed: Feed,
    one_worker: dict[str, dict[str, object]],
    topics: LocalBroker,
    rapport_home: Path,
    tmp_path: Path,
) -> None:
    two = referral_events_of_a_run(topics, rapport_home, tmp_path, feed, workers=2, limit=150)
    assert_same_events(one_worker, two, of="one worker")
