"""No raw account number leaves ingestion: the four workers run a simulated population on the
real broker, then every record of every topic they wrote (outputs, internal topics, table
changelogs) and every line they logged is searched for the counterparties' account numbers and
names from the input; logs, notifications and RM tasks also for the customers' own account
numbers.

The input's own dead-letter topic keeps rejected input as it came, to be replayed after a fix:
it is the input's quarantine, guarded like the input topic, and not searched.

Runs after test_worker_ingest and test_worker_prometheus (whose counts assume they produce
account events first). Its feed is dated before the later modules' feeds, and its customers
and events have ids of their own, so that those feeds go on forward in time and never meet
these customers."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import ACCOUNT_EVENTS, ALL_TOPICS, NOTIFICATIONS, RM_TASKS
from services.runtime import db
from services.runtime.broker import LocalBroker
from services.runtime.produce import records_from_lines
from services.simulator.simulate import simulate
from tests.integration.stack import end_offsets, produce, read_all, service_env, worker

SERVICES = ("lifecycle", "referral", "rewards", "notify")


def topic_names(bootstrap: str) -> list[str]:
    async def names() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return sorted(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(names())


def secrets_of(lines: list[bytes]) -> tuple[set[str], set[str]]:
    """The counterparties' accounts and names, and the customers' own account ids."""
    counterparties: set[str] = set()
    own: set[str] = set()
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        party = event.get("counterparty")
        if isinstance(party, dict):
            for field in ("account", "name"):
                value = party.get(field)
                # The simulator names a customer's transfer to their own other bank "Own
                # account": a phrase, not anyone's name.
                if isinstance(value, str) and len(value) >= 6 and value != "Own account":
                    counterparties.add(value)
        if isinstance(event.get("account_id"), str) and len(event["account_id"]) >= 6:
            own.add(event["account_id"])
    # A transfer between two of our customers names the other's account here: an account id
    # the services keep as any customer's own (and may not show in notifications or tasks).
    return counterparties - own, own


def test_no_raw_account_number_leaves_ingestion(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    simulation = simulate(customers=40, days=150, seed=11, start=datetime(2025, 1, 1, tzinfo=UTC))
    # Every simulation names its customers and events C000001...: prefixed here, so that the
    # later modules' feeds do not meet these customers (their events would read as duplicates).
    lines = [line.replace(b'"C0', b'"PC0') for line in simulation.lines]
    counterparties, own = secrets_of(lines)
    assert len(counterparties) > 10 and len(own) > 40
    url = f"sqlite:///{tmp_path / 'rapport.db'}"
    db.upgrade(url)
    env = {**service_env(topics, rapport_home), "DATABASE_URL": url}
    instance = env["RAPPORT_INSTANCE"]
    before = set(topic_names(topics.bootstrap))
    marks = {t.name: end_offsets(topics.bootstrap, t.name) for t in ALL_TOPICS}
    produce(
        topics.bootstrap,
        ACCOUNT_EVENTS.name,
        [(r.key, r.value) for r in records_from_lines(lines)],
    )
    outputs = [t.name for t in ALL_TOPICS if t is not ACCOUNT_EVENTS]
    with ExitStack() as stack:
        running = [stack.enter_context(worker(s, env, tmp_path)) for s in SERVICES]
        # Drained: every worker has caught up and no topic has grown for a while.
        deadline = time.monotonic() + 400
        last: dict[str, dict[int, int]] = {}
        quiet_since = time.monotonic()
        while True:
            now = {t: end_offsets(topics.bootstrap, t) for t in outputs}
            lag = sum(w.total("rapport_consumer_lag_records") for w in running)
            consumed = running[0].total("rapport_events_consumed_total", topic=ACCOUNT_EVENTS.name)
            if now != last or lag > 0 or consumed == 0:
                quiet_since, last = time.monotonic(), now
            elif time.monotonic() - quiet_since > 8:
                break
            assert time.monotonic() < deadline, f"the workers never settled (lag {lag})"
            time.sleep(1)
    written = [t for t in topic_names(topics.bootstrap) if instance in t] + [
        name for t in ALL_TOPICS if t is not ACCOUNT_EVENTS for name in (t.name, t.dlq)
    ]
    assert any("changelog" in t for t in written) and set(written) - before

    def search(text: str, needles: set[str]) -> set[str]:
        return {n for n in needles if n in text}

    leaks: dict[str, set[str]] = {}
    for topic in sorted(set(written)):
        records = read_all(topics.bootstrap, topic)
        start = marks.get(topic, {})
        text = "\n".join(
            (r.key or b"").decode("utf-8", "replace")
            + (r.value or b"").decode("utf-8", "replace")
            + "".join(v.decode("utf-8", "replace") for v in r.headers.values())
            for r in records
            if r.offset >= start.get(r.partition, 0)
        )
        found = search(text, counterparties)
        if topic in (NOTIFICATIONS.name, RM_TASKS.name):
            found |= search(text, own)
        if found:
            leaks[topic] = found
    for log in tmp_path.glob("worker-*.log"):
        found = search(log.read_text(errors="replace"), counterparties | own)
        if found:
            leaks[log.name] = found
    assert leaks == {}
    # The search could find them: the input itself holds them.
    assert (
        search(
            "\n".join(
                (r.value or b"").decode("utf-8", "replace")
                for r in read_all(topics.bootstrap, ACCOUNT_EVENTS.name)
            ),
            counterparties,
        )
        == counterparties
    )
