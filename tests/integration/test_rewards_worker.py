"""A rewards worker SIGKILLed at random points while thousands of qualified referrals stream
in, then restarted, books exactly one credit per side of each referral, its balances equal the
sum of its entries, and every entry reaches the ledger topic exactly once: on SQLite and on
PostgreSQL, on the real broker."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from schemas.referral import LeadType, ReferralChanged
from schemas.topics import MILESTONES, REFERRAL_EVENTS, REWARDS_LEDGER, STAGE_CHANGED
from services.rewards import outbox, read_model, service
from services.rewards.domain import RewardRules
from services.rewards.ledger import LedgerEntryRow, OutboxRow
from services.rewards.outbox import OutboxRelay
from services.runtime import db
from services.runtime.broker import LocalBroker
from services.runtime.codec import encode
from services.runtime.settings import RuntimeSettings
from services.runtime.tracing import trace_id_of
from tests.integration.stack import (
    end_offsets,
    produce_with_headers,
    prometheus,
    records_since,
    service_env,
    wait_until_consumed,
    worker,
)

REFERRALS = 2000
REFERRERS = 400  # five referrals each, in one month: 1,000 points, under every cap
REFERRER_RULE = "referral.referrer"


def trace_of(source_event_id: str) -> str:
    """The trace id the bank's producer gave a referral event (a W3C trace id, 32 hex)."""
    return hashlib.sha256(source_event_id.encode()).hexdigest()[:32]


def qualified_referrals(run: str) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    records = []
    for n in range(REFERRALS):
        event = ReferralChanged(
            event_id=f"{run}-q-{n}",
            type="referral.qualified",
            occurred_at=start + timedelta(minutes=n),
            referral_id=f"{run}-ref-{n}",
            referrer=f"{run}-R{n % REFERRERS}",
            referee=f"{run}-E{n}",
            via="code",
            lead_type=LeadType.RETAIL,
        )
        traceparent = f"00-{trace_of(event.event_id)}-00f067aa0ba902b7-01".encode()
        records.append((event.referral_id.encode(), encode(event), [("traceparent", traceparent)]))
    # Redelivered by an upstream retry: the same event again, later in the stream.
    return records + records[::40]


@pytest.mark.timeout(900)
def test_killed_rewards_worker_books_each_referral_exactly_once(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path, database_url: str
) -> None:
    run = uuid.uuid4().hex[:6]
    db.upgrade(database_url)
    env = {**service_env(topics, rapport_home), "DATABASE_URL": database_url}
    group = RuntimeSettings(instance=env["RAPPORT_INSTANCE"]).app_id("rewards")
    marks = end_offsets(topics.bootstrap, REWARDS_LEDGER.name)
    produce_with_headers(topics.bootstrap, REFERRAL_EVENTS.name, qualified_referrals(run))

    rng = random.Random(7)
    for after in [rng.randrange(150, 1200) for _ in range(3)]:
        with worker("rewards", env, tmp_path) as running:
            running.wait_for("rapport_events_consumed_total", after, timeout=180)
            running.process.kill()  # SIGKILL: no shutdown, no commit, mid-transaction or mid-send
            running.process.wait()
    with worker("rewards", env, tmp_path) as running:
        for topic in (REFERRAL_EVENTS, STAGE_CHANGED, MILESTONES):
            wait_until_consumed(topics.bootstrap, group, topic.name, running, timeout=300)
        deadline = time.monotonic() + 60
        while outbox.outbox_backlog(database_url):
            assert time.monotonic() < deadline, "the outbox relay did not catch up"
            time.sleep(0.5)
        # Ten more referrals while Prometheus watches: its counts move with the worker's, by
        # the rule's 200 points per referrer entry.
        with prometheus([running], tmp_path) as server:
            before = running.total("rapport_rewards_ledger_entries_total", rule=REFERRER_RULE)
            extra = uuid.uuid4().hex[:6]
            produce_with_headers(
                topics.bootstrap, REFERRAL_EVENTS.name, qualified_referrals(extra)[:10]
            )
            entries = running.wait_for(
                "rapport_rewards_ledger_entries_total", before + 10, rule=REFERRER_RULE
            )
            assert entries == before + 10
            points = running.total("rapport_rewards_points_total", rule=REFERRER_RULE)
            assert points == 200 * entries
            for promql, expected in (
                (f'sum(rapport_rewards_ledger_entries_total{{rule="{REFERRER_RULE}"}})', entries),
                (f'sum(rapport_rewards_points_total{{rule="{REFERRER_RULE}"}})', points),
            ):
                assert server.wait_for(promql, at_least=expected) == expected

    with Session(db.get_engine(database_url)) as session:
        entries = session.exec(
            select(LedgerEntryRow).where(col(LedgerEntryRow.customer_id).startswith(run))
        ).all()
    sides = Counter((e.referral_id, e.rule) for e in entries)
    assert len(sides) == 2 * REFERRALS and set(sides.values()) == {1}
    referrers = sum(e.points for e in entries if e.rule == "referral.referrer")
    referees = sum(e.points for e in entries if e.rule == "referral.referee")
    assert (referrers, referees) == (REFERRALS * 200, REFERRALS * 100)
    assert read_model.check_balances(database_url).mismatches == {}

    records = [
        r
        for r in records_since(topics.bootstrap, REWARDS_LEDGER.name, marks)
        if (r.key or b"").startswith(run.encode())
    ]
    published = Counter(orjson.loads(r.value or b"{}")["entry_id"] for r in records)
    # Each entry continues the trace of the referral event that booked it, through the outbox.
    for r in records:
        source = orjson.loads(r.value or b"{}")["source_event_id"]
        assert trace_id_of(r.headers) == trace_of(source)
    assert set(published) == {e.entry_id for e in entries}
    twice = {k: n for k, n in published.items() if n > 1}
    assert not twice, f"{len(twice)} entries published more than once"


def test_a_relay_taking_over_sends_only_what_was_not_sent_before(
    topics: LocalBroker, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    url = f"sqlite:///{tmp_path / 'rewards.db'}"
    db.upgrade(url)
    now = datetime(2026, 11, 23, tzinfo=UTC)

    def qualify(n: int) -> None:
        event = ReferralChanged.model_validate_json(qualified_referrals(run)[n][1])
        service.apply(url, event, RewardRules(), now)

    async def relay_once() -> int:
        relay = OutboxRelay(url, [topics.bootstrap], REWARDS_LEDGER.name, 0.2, 100)
        try:
            return await relay.run_once()
        finally:
            await relay.stop()

    marks = end_offsets(topics.bootstrap, REWARDS_LEDGER.name)
    for n in range(6):
        qualify(n)
    assert asyncio.run(relay_once()) == 12
    # As if that relay died after sending and before marking its last 5 rows.
    with Session(db.get_engine(url)) as session:
        last = session.exec(select(OutboxRow).order_by(col(OutboxRow.seq).desc()).limit(5)).all()
        for row in last:
            row.published_at = None
            session.add(row)
        session.commit()
    for n in range(6, 8):
        qualify(n)
    time.sleep(0.3)  # its lease lapses
    assert asyncio.run(relay_once()) == 4
    records = [
        r
        for r in records_since(topics.bootstrap, REWARDS_LEDGER.name, marks)
        if (r.key or b"").startswith(run.encode())
    ]
    published = Counter(orjson.loads(r.value or b"{}")["entry_id"] for r in records)
    # Booked outside a consumed event: no trace to continue.
    assert all(trace_id_of(r.headers) is None for r in records)
    assert len(published) == 16 and set(published.values()) == {1}
    assert outbox.outbox_backlog(url) == 0


# Counted for the referral events only: the stage changes earlier modules wrote, which the
# worker also reads, need no database when they earn nothing, and went on being counted during
# the outage in CI (4 of them, twice).
CONSUMED = "rapport_events_consumed_total"


@pytest.mark.timeout(600)
def test_a_database_outage_pauses_the_rewards_worker_and_loses_nothing(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL refuses the ledger's database for a while: the worker waits (no dead letter,
    no exit); killed during the outage and restarted after it, it has committed no offset past
    what it booked, so every referral is booked exactly once in the end."""
    run = uuid.uuid4().hex[:6]
    name = f"rapport_outage_{run}"
    admin = db.get_engine(postgres_url)

    def sql(statement: str, **params: str) -> None:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(statement), params)

    sql(f"CREATE DATABASE {name}")
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    db.upgrade(url)
    db.get_engine(url).dispose()
    env = {**service_env(topics, rapport_home), "DATABASE_URL": url}
    group = RuntimeSettings(instance=env["RAPPORT_INSTANCE"]).app_id("rewards")
    count = REFERRALS  # enough that the outage comes mid-stream, whatever the batch size
    dead = end_offsets(topics.bootstrap, REFERRAL_EVENTS.dlq)
    produce_with_headers(topics.bootstrap, REFERRAL_EVENTS.name, qualified_referrals(run)[:count])
    try:
        with worker("rewards", env, tmp_path) as running:
            running.wait_for(CONSUMED, 40, timeout=180, topic=REFERRAL_EVENTS.name)
            sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name",
                name=name,
            )
            time.sleep(3)
            during = running.total(CONSUMED, topic=REFERRAL_EVENTS.name)
            time.sleep(6)
            assert running.process.poll() is None, "the worker gave up during the outage"
            assert running.total(CONSUMED, topic=REFERRAL_EVENTS.name) == during, "it went on"
            assert during < count, "the outage should come mid-stream"
            running.process.kill()
            running.process.wait()
        sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        with worker("rewards", env, tmp_path) as running:
            wait_until_consumed(topics.bootstrap, group, REFERRAL_EVENTS.name, running, timeout=300)
        with Session(db.get_engine(url)) as session:
            entries = session.exec(
                select(LedgerEntryRow).where(col(LedgerEntryRow.customer_id).startswith(run))
            ).all()
        sides = Counter((e.referral_id, e.rule) for e in entries)
        assert len(sides) == 2 * count and set(sides.values()) == {1}
        assert read_model.check_balances(url).mismatches == {}
        assert records_since(topics.bootstrap, REFERRAL_EVENTS.dlq, dead) == []
    finally:
        db.get_engine(url).dispose()
        sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
