"""A pilot's quiet input on the real broker (issue 21): one customer's referral chain on a
six-partition input whose other partitions are empty gives the lead and the attribution once
the idle interval has passed, and a high-net-worth customer who goes quiet on a partition of
their own gets their retention task once that partition has been idle for the interval,
through lifecycle and notify. Without idle partitions neither came at all.

The module has a broker of its own: its first test starts on fresh topics (every partition
but the chain's empty), and the later ones start their groups at the input's end."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.topics import (
    ACCOUNT_EVENTS,
    CHURN_SIGNALS,
    MILESTONES,
    REFERRAL_EVENTS,
    REWARDS_LEDGER,
    RM_TASKS,
    STAGE_CHANGED,
)
from services.notify.agents import partition_of
from services.runtime import db, readback
from services.runtime.broker import BrokerError, LocalBroker
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics
from tests.conftest import TEST_BROKER_PORT, own_broker
from tests.integration.stack import (
    RunningWorker,
    end_offsets,
    produce,
    read_all,
    service_env,
    worker,
)
from tests.integration.test_notify_store import treated

# After the pipeline's brokers (+20 to +79), before the SCRAM one (+100).
PORT = TEST_BROKER_PORT + 88
PARTITIONS = 6
# The idle interval of the fast tests; one test runs with the default (30 s).
SHORT_SECONDS = 3.0
# What a decision may take past the interval on this 2-core machine: the idle check's tick
# and its question to the broker, the marks, a batch or two, and the read back.
SLACK_SECONDS = 12.0
T0 = datetime(2027, 3, 1, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Quiet:
    broker: LocalBroker
    home: Path
    logs: Path


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quiet]:
    work = tmp_path_factory.mktemp("quiet")
    home = work / "home"
    home.mkdir()
    broker = own_broker(work, PORT, "512m")
    try:
        broker.start(timeout=120)
    except BrokerError as exc:
        pytest.fail(f"the real Kafka broker is needed and could not start: {exc}")
    try:
        settings = RuntimeSettings(kafka_bootstrap_servers=broker.bootstrap, home=home)
        asyncio.run(create_topics(settings))
        db.upgrade(settings.resolved_database_url)
        yield Quiet(broker, home, work)
    finally:
        broker.stop()


def customers_on_one_partition(prefix: str, count: int) -> list[str]:
    """`count` customer ids that the input's partitioner puts on one partition."""
    by_partition: dict[int, list[str]] = {}
    for n in range(1000):
        customer = f"{prefix}{n:03d}"
        found = by_partition.setdefault(partition_of(customer.encode(), PARTITIONS), [])
        found.append(customer)
        if len(found) == count:
            return found
    raise AssertionError("no partition got enough customers")


def event(customer: str, n: int, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "event_type": kind,
        "event_id": f"{customer}-{n}",
        "occurred_at": at.isoformat(),
        "customer_id": customer,
        **fields,
    }


def money(amount: int, balance: int, **fields: Any) -> dict[str, Any]:
    return {"amount": str(amount), "balance_after": str(balance), "currency": "CNY", **fields}


def referral_chain(referrer: str, prospect: str) -> list[dict[str, Any]]:
    """11 events: the referrer pays an account at another bank four times; its owner opens an
    account here, funds it from that account, and uses it."""
    other = {"bank_code": "OTHERBANK", "account": f"X-{prospect}"}
    opened = T0 + timedelta(days=6)
    events = [
        event(referrer, 1, "account.opened", T0, account_id="A1"),
        event(
            referrer, 2, "deposit", T0 + timedelta(hours=1), account_id="A1", **money(5000, 5000)
        ),
    ]
    for n in range(4):
        events.append(
            event(
                referrer,
                3 + n,
                "transfer.out",
                T0 + timedelta(days=1 + n),
                account_id="A1",
                counterparty=other,
                **money(100, 4900 - 100 * n),
            )
        )
    events += [
        event(prospect, 1, "account.opened", opened, account_id="N1"),
        event(
            prospect,
            2,
            "transfer.in",
            opened + timedelta(hours=2),
            account_id="N1",
            counterparty=other,
            **money(2000, 2000),
        ),
        event(
            prospect, 3, "deposit", opened + timedelta(hours=3), account_id="N1", **money(100, 2100)
        ),
        event(
            prospect,
            4,
            "withdrawal",
            opened + timedelta(hours=4),
            account_id="N1",
            **money(10, 2090),
        ),
        event(
            referrer, 7, "deposit", opened + timedelta(hours=5), account_id="A1", **money(100, 4600)
        ),
    ]
    return events


def feed(broker: LocalBroker, events: list[dict[str, Any]]) -> float:
    """Produce the events (keyed by customer); the monotonic time the broker had them all."""
    produce(
        broker.bootstrap,
        ACCOUNT_EVENTS.name,
        [(e["customer_id"].encode(), orjson.dumps(e)) for e in events],
    )
    return time.monotonic()


def wait_ready(*running: RunningWorker, timeout: float = 90) -> None:
    """Until each worker has its partitions and its tables recovered."""
    deadline = time.monotonic() + timeout
    for one in running:
        while "Worker ready" not in one.log.read_text(errors="replace"):
            assert one.process.poll() is None, f"worker exited:\n{one.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the worker never got ready"
            time.sleep(0.2)


def seconds_until(
    broker: LocalBroker,
    topic: str,
    match: Callable[[dict[str, Any]], bool],
    since: float,
    limit: float,
) -> float:
    """Seconds from `since` until a record of `topic` that `match`es is read back."""
    deadline = since + limit
    while time.monotonic() < deadline:
        for record in read_all(broker.bootstrap, topic, timeout=5):
            if match(orjson.loads(record.value or b"{}")):
                return time.monotonic() - since
        time.sleep(0.25)
    raise AssertionError(f"nothing matching on {topic} within {limit:.0f} s")


@contextmanager
def worker_log_on_failure(*running: RunningWorker) -> Iterator[None]:
    """A decision that never came says why only in the workers' logs: their idle checks,
    rebalances and marks. Fail with the lines that tell."""
    try:
        yield
    except AssertionError as exc:
        telling = ("idle", "rebalanc", "assign", "ready", "error", "warn", "mark")
        lines = [
            line
            for one in running
            for line in one.log.read_text(errors="replace").splitlines()
            if any(word in line.lower() for word in telling)
        ]
        raise AssertionError(f"{exc}\nthe workers' log:\n" + "\n".join(lines[-60:])) from exc


def a_fresh_group(quiet: Quiet, idle_seconds: float | None) -> dict[str, str]:
    env = service_env(quiet.broker, quiet.home)
    if idle_seconds is not None:
        env["RAPPORT_IDLE_PARTITION_SECONDS"] = str(idle_seconds)
    else:
        env.pop("RAPPORT_IDLE_PARTITION_SECONDS", None)
    return env


def start_at_the_end(quiet: Quiet, env: dict[str, str], service: str, topics: list[str]) -> None:
    """A new group starts at the topics' ends, as an operator starts one: the earlier tests'
    records are behind it, and every partition but the test's own stays quiet."""
    group = RuntimeSettings(instance=env["RAPPORT_INSTANCE"]).app_id(service)
    for topic in topics:
        ends = end_offsets(quiet.broker.bootstrap, topic)
        asyncio.run(readback.start_group_at(quiet.broker.bootstrap, group, topic, ends))


def lead_and_attribution(
    quiet: Quiet, env: dict[str, str], prefix: str, limit: float
) -> tuple[float, float]:
    """Feed one customer's referral chain to a referral worker; seconds until its lead and
    until its attribution came out."""
    referrer, prospect = customers_on_one_partition(prefix, 2)
    with worker("referral", env, quiet.logs) as running, worker_log_on_failure(running):
        wait_ready(running)
        fed = feed(quiet.broker, referral_chain(referrer, prospect))
        lead = seconds_until(
            quiet.broker,
            REFERRAL_EVENTS.name,
            lambda e: e["type"] == "lead.detected" and e.get("suggested_referrer") == referrer,
            fed,
            limit,
        )
        attributed = seconds_until(
            quiet.broker,
            REFERRAL_EVENTS.name,
            lambda e: (
                e["type"] == "referral.attributed"
                and (e.get("referee"), e.get("referrer")) == (prospect, referrer)
            ),
            fed,
            limit,
        )
    print(
        f"\nidle {env.get('RAPPORT_IDLE_PARTITION_SECONDS', 'default')}: lead {lead:.1f} s, "
        f"attribution {attributed:.1f} s after the chain was in"
    )
    return lead, attributed


def test_a_single_customers_chain_gives_the_lead_and_the_attribution_after_the_interval(
    quiet: Quiet,
) -> None:
    """Fresh topics: the chain's partition holds 11 events, the five others nothing. The
    last day's links and the chain funding used to wait for a next day of input that never
    came; now they wait for the interval."""
    assert sum(end_offsets(quiet.broker.bootstrap, ACCOUNT_EVENTS.name).values()) == 0
    env = a_fresh_group(quiet, SHORT_SECONDS)
    lead, attributed = lead_and_attribution(
        quiet, env, f"P{uuid.uuid4().hex[:4]}", SHORT_SECONDS + 60
    )
    assert lead <= SHORT_SECONDS + SLACK_SECONDS
    assert attributed <= SHORT_SECONDS + SLACK_SECONDS


def test_a_high_net_worth_customer_gone_quiet_gets_the_retention_task_after_the_interval(
    quiet: Quiet,
) -> None:
    """H deposits 3,000,000 (high net worth) and five times more, then goes quiet on a
    partition of their own; another customer's events move their partition's clock 65 days
    on. Once H's partition has been idle for the interval, its clock follows the other's:
    45 days without activity raise inactivity, H is at risk, and notify makes the RM's
    retention task."""
    env = a_fresh_group(quiet, SHORT_SECONDS)
    run = uuid.uuid4().hex[:4]
    # A customer in notify's holdout gets no task by design: the test's own must be treated.
    hnw = treated(f"H{run}")
    other = next(
        f"O{run}{n}"
        for n in range(1000)
        if partition_of(f"O{run}{n}".encode(), PARTITIONS) != partition_of(hnw.encode(), PARTITIONS)
    )
    events = [
        event(hnw, 1, "account.opened", T0, account_id="H1"),
        event(
            hnw,
            2,
            "deposit",
            T0 + timedelta(hours=1),
            account_id="H1",
            **money(3_000_000, 3_000_000),
        ),
        event(other, 0, "account.opened", T0, account_id="O1"),
    ]
    # Five more deposits make a habit: disengagement needs engagement first.
    events += [
        event(
            hnw,
            2 + n,
            "deposit",
            T0 + timedelta(days=n),
            account_id="H1",
            **money(100, 3_000_000 + 100 * n),
        )
        for n in range(1, 6)
    ]
    events += [
        event(other, n, "deposit", T0 + timedelta(days=5 * n), account_id="O1", **money(10, 10 * n))
        for n in range(1, 14)
    ]
    start_at_the_end(quiet, env, "lifecycle", [ACCOUNT_EVENTS.name])
    start_at_the_end(
        quiet,
        env,
        "notify",
        [
            ACCOUNT_EVENTS.name,
            STAGE_CHANGED.name,
            CHURN_SIGNALS.name,
            MILESTONES.name,
            REFERRAL_EVENTS.name,
            REWARDS_LEDGER.name,
        ],
    )
    with ExitStack() as stack:
        running = [stack.enter_context(worker(s, env, quiet.logs)) for s in ("lifecycle", "notify")]
        stack.enter_context(worker_log_on_failure(*running))
        wait_ready(*running)
        fed = feed(quiet.broker, events)
        at_risk = seconds_until(
            quiet.broker,
            STAGE_CHANGED.name,
            lambda e: e["customer_id"] == hnw and e["stage"] == "at_risk",
            fed,
            SHORT_SECONDS + 60,
        )
        task = seconds_until(
            quiet.broker,
            RM_TASKS.name,
            lambda e: e.get("customer_id") == hnw and e["type"] == "rm_task.created",
            fed,
            SHORT_SECONDS + 60,
        )
    print(f"\nhigh net worth, idle {SHORT_SECONDS} s: at risk {at_risk:.1f} s, task {task:.1f} s")
    # Only the idle partition's following clock can make it: H's own has not moved.
    assert at_risk >= SHORT_SECONDS - 0.5
    assert task <= SHORT_SECONDS + SLACK_SECONDS
    changes = [
        orjson.loads(r.value or b"{}")
        for r in read_all(quiet.broker.bootstrap, STAGE_CHANGED.name)
        if r.key == hnw.encode()
    ]
    (risk,) = [c for c in changes if c["stage"] == "at_risk" and c["type"] == "stage.changed"]
    assert (risk["tier"], risk["occurred_at"][:10]) == ("hnw", "2027-04-20")  # day 5 + 45


def test_with_the_default_interval_the_decisions_come_within_a_minute(quiet: Quiet) -> None:
    """A new user's first try, with every setting at its default: the chain's decisions come
    the interval (30 s) after its last record, plus a batch."""
    env = a_fresh_group(quiet, None)
    start_at_the_end(quiet, env, "referral", [ACCOUNT_EVENTS.name])
    default = RuntimeSettings.model_fields["idle_partition_seconds"].default
    assert default == 30
    lead, attributed = lead_and_attribution(quiet, env, f"D{uuid.uuid4().hex[:4]}", 90)
    assert lead <= 60 and attributed <= 60
    # The chain's funding is on its partition's last day: only the idle interval lets it out.
    assert default - 1 <= attributed <= default + SLACK_SECONDS
