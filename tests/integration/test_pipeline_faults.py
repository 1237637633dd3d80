"""The four workers on a simulated stream, compared with an uninterrupted run of the same input:
killed with SIGKILL one at a time and all together, several times, scaled from one process per
service to two and back, or left running while the broker restarts, they publish the same stage
changes, churn signals, milestones, referral events, ledger entries, notifications and RM tasks,
each once after de-duplication by event id. The same on a three-node cluster with every topic
replicated three times (min in-sync 2): the leader of the input partitions killed with SIGKILL
and started again later, a node stopped for longer than the consumers' session timeout, and a
rolling restart of the three nodes.

Every run has a broker (or cluster) of its own, so no run's outputs reach another run's
consumers, and the input is fed while the workers run, so every fault falls mid-stream."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import ACCOUNT_EVENTS, ALL_TOPICS, REWARDS_LEDGER
from services.referral import read_model
from services.runtime import db
from services.runtime.broker import BrokerError, LocalBroker
from services.runtime.cluster import LocalCluster
from services.runtime.observe import uncommitted
from services.runtime.produce import records_from_lines
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics
from services.simulator.simulate import Simulation, simulate
from tests.conftest import TEST_BROKER_PORT, own_broker, own_cluster
from tests.integration.stack import (
    METRICS_PORT_BASE,
    RunningWorker,
    assert_same_events,
    end_offsets,
    produce,
    read_all,
    service_env,
    worker,
)

SERVICES = ("lifecycle", "referral", "rewards", "notify")
OUTPUTS = tuple(t.name for t in ALL_TOPICS if t is not ACCOUNT_EVENTS)
# Set by the process that wrote the record, not by the event it answers: the booking time, and
# the balance after the entry, which follows the order the rewards worker took its two input
# topics in (each run's balances are checked against its own ledger instead).
BOOKING_FIELDS = ("booked_at", "points_balance")
# The pipeline's brokers: after the session broker and the SCRAM one.
PORTS = iter(range(TEST_BROKER_PORT + 20, TEST_BROKER_PORT + 80, 4))
# The clusters' first ports, after the SCRAM broker's: three nodes take nine ports from each.
CLUSTER_PORTS = iter(range(TEST_BROKER_PORT + 120, TEST_BROKER_PORT + 200, 10))
FEED_SECONDS = 40.0
# Once a worker has taken every record, its input partitions turn idle after this long and
# release what waits for them (referral's last days of links and lapsed leads, lifecycle's
# time rules): outputs every run makes, so a run is drained only once they are out. Far
# longer than the feed's pauses (2 s), so that no partition turns idle mid-stream. A broker
# restart pauses the feed for longer (13 s or more), but the workers do not count a quiet
# period while they cannot see the broker (services/runtime/idle.py).
IDLE_SECONDS = 10.0
# A run is drained when nothing was uncommitted and no output grew for this long.
SETTLED_SECONDS = IDLE_SECONDS + 12.0
# Each run feeds for 40 s and drains for minutes on 2 cores; the first test also makes the
# uninterrupted reference run (the suite's default timeout is 300 s).
pytestmark = pytest.mark.timeout(900)


@dataclass
class Outputs:
    """What a run published: each output record by event id, and how many records in all."""

    by_id: dict[str, dict[str, object]] = field(default_factory=dict)
    written: int = 0
    events_in: int = 0
    faults: list[str] = field(default_factory=list)

    def count(self) -> Counter[str]:
        return Counter(str(e["type"]) for e in self.by_id.values())


class Pipeline:
    """One process per service (a second one while scaled out) on a broker of the run's own."""

    def __init__(
        self, broker: LocalBroker | LocalCluster, home: Path, logs: Path, partitions: int
    ) -> None:
        self.broker = broker
        self.env = {
            **service_env(broker, home, uuid.uuid4().hex[:8]),
            "RAPPORT_IDLE_PARTITION_SECONDS": str(IDLE_SECONDS),
            "RAPPORT_TOPIC_PARTITIONS": str(partitions),
        }
        self.settings = RuntimeSettings(
            kafka_bootstrap_servers=broker.bootstrap,
            instance=self.env["RAPPORT_INSTANCE"],
            metrics_port_base=METRICS_PORT_BASE,
        )
        self.logs = logs
        self.stack = ExitStack()
        self.broker_up = threading.Lock()
        self.running: dict[str, RunningWorker] = {}
        self.extra: dict[str, ExitStack] = {}

    def start(self, name: str) -> None:
        """A worker process: `service`, or `service#n`, the service's n-th process in its
        group (metrics on a port of its own)."""
        service, _, n = name.partition("#")
        env = self.env
        if n:
            env = {**env, "RAPPORT_METRICS_PORT_BASE": str(METRICS_PORT_BASE + 10 * int(n))}
        self.running[name] = self.stack.enter_context(worker(service, env, self.logs))

    def kill(self, *services: str) -> None:
        """SIGKILL (`service` or `service#n`): no shutdown, no final commit, no flush; then
        start them again."""
        for service in services:
            process = self.running[service].process
            process.kill()
            process.wait()
        for service in services:
            self.start(service)

    def restart_broker(self, down_seconds: float) -> None:
        """The broker stops and starts again; the workers are left to reconnect by themselves."""
        with self.broker_up:
            self.broker.stop()
            time.sleep(down_seconds)
            self.broker.start(timeout=120)

    def scale_out(self, service: str) -> None:
        """A second process of the service joins its group."""
        second = ExitStack()
        env = {**self.env, "RAPPORT_METRICS_PORT_BASE": str(METRICS_PORT_BASE + 10)}
        second.enter_context(worker(service, env, self.logs))
        self.extra[service] = second

    def scale_in(self, service: str) -> None:
        """The second process stops (SIGTERM) and its partitions go back to the first."""
        self.extra.pop(service).close()

    def busy(self) -> int:
        return asyncio.run(uncommitted(self.settings))

    def wait_until_drained(self, fed: threading.Event, timeout: float = 600) -> None:
        """Until the feed is in, every group has committed the end of every topic it reads,
        and no output has grown for SETTLED_SECONDS: the referral steps make more steps, and
        the idle partitions' releases come IDLE_SECONDS after the last record. A run declared
        drained before them missed outputs that a slower run then made (lead.expired and
        lead.updated of the last days, in clean CI runs on 2 cores)."""
        deadline = time.monotonic() + timeout
        last: list[dict[int, int]] = []
        settled_since: float | None = None
        while True:
            for service, running in self.running.items():
                assert running.process.poll() is None, (
                    f"{service} exited:\n{running.log.read_text()[-3000:]}"
                )
            ends = [end_offsets(self.broker.bootstrap, t) for t in OUTPUTS]
            now = time.monotonic()
            if fed.is_set() and ends == last and self.busy() == 0:
                if settled_since is None:
                    settled_since = now
                if now - settled_since >= SETTLED_SECONDS:
                    return
            else:
                settled_since = None
            assert now < deadline, f"the pipeline never drained ({self.busy()} left)"
            last = ends
            time.sleep(4)

    def close(self) -> None:
        for second in self.extra.values():
            second.close()
        self.stack.close()


def assert_balances_follow_the_ledger(entries: list[dict[str, object]]) -> None:
    """Each entry's balance is the sum of the customer's entries up to it, in ledger order."""
    balances: Counter[str] = Counter()
    seen: set[object] = set()
    for entry in entries:
        if entry["event_id"] in seen:
            continue  # re-sent after a restart
        seen.add(entry["event_id"])
        customer = str(entry["customer_id"])
        balances[customer] += int(str(entry["points"]))
        assert entry["points_balance"] == balances[customer], entry


@contextmanager
def a_kafka(home: Path, nodes: int) -> Iterator[LocalBroker | LocalCluster]:
    """A broker of the run's own, or a cluster of `nodes`."""
    kafka = (
        own_broker(home, next(PORTS), "512m")
        if nodes == 1
        else own_cluster(home, next(CLUSTER_PORTS), nodes, "384m")
    )
    try:
        kafka.start(timeout=120)
    except BrokerError as exc:
        pytest.fail(f"the real Kafka broker is needed and could not start: {exc}")
    try:
        yield kafka
    finally:
        kafka.stop()


Fault = Callable[[Pipeline], str]


def run_pipeline(
    simulation: Simulation,
    work: Path,
    faults: list[tuple[float, Fault]],
    nodes: int = 1,
    processes: int = 1,
    partitions: int = 6,
) -> Outputs:
    """Feed the simulation over FEED_SECONDS to the four workers (`processes` of each, in one
    group per service) on a broker (or a cluster of `nodes`) with topics of `partitions`,
    applying each fault at its second after the start, and return what they published once
    drained."""
    home = work / "home"
    home.mkdir(parents=True)
    with a_kafka(work, nodes) as broker:
        created = asyncio.run(
            create_topics(
                RuntimeSettings(
                    kafka_bootstrap_servers=broker.bootstrap,
                    home=home,
                    topic_partitions=partitions,
                    # Named, as a deployment names it: counted from the brokers the cluster
                    # lists, a node fenced for a moment under load would make it smaller.
                    kafka_environment=broker.kafka_environment.name,
                )
            )
        )
        # A fault on a cluster proves something only if every partition has its copies.
        copies = min(nodes, 3)
        assert {t.replication_factor for t in created} == {copies}, created
        url = RuntimeSettings(home=home).resolved_database_url
        db.upgrade(url)
        truth = simulation.truth
        read_model.register_codes(
            url, truth.codes, truth.start - timedelta(days=1), timedelta(days=400)
        )
        pipeline = Pipeline(broker, home, work, partitions)
        outputs = Outputs(events_in=len(simulation.lines))
        fed = threading.Event()
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                records = [(r.key, r.value) for r in records_from_lines(simulation.lines)]
                chunks = 20
                size = -(-len(records) // chunks)
                for n in range(chunks):
                    with pipeline.broker_up:  # the core bank's feed waits while it is down
                        produce(
                            broker.bootstrap,
                            ACCOUNT_EVENTS.name,
                            records[n * size : (n + 1) * size],
                        )
                    time.sleep(FEED_SECONDS / chunks)
            except BaseException as exc:  # the test thread reports it
                failure.append(exc)
            finally:
                fed.set()

        try:
            for service in SERVICES:
                pipeline.start(service)
                for n in range(2, processes + 1):
                    pipeline.start(f"{service}#{n}")
            feeder = threading.Thread(target=feed, daemon=True)
            started = time.monotonic()
            feeder.start()
            for at, fault in faults:
                time.sleep(max(at - (time.monotonic() - started), 0))
                left = pipeline.busy()
                outputs.faults.append(
                    f"{fault(pipeline)} at {time.monotonic() - started:.0f} s "
                    f"with {left} records uncommitted"
                )
            feeder.join()
            assert not failure, failure
            pipeline.wait_until_drained(fed)
        finally:
            pipeline.close()
        for topic in OUTPUTS:
            events = [orjson.loads(r.value or b"{}") for r in read_all(broker.bootstrap, topic)]
            if topic == REWARDS_LEDGER.name:
                assert_balances_follow_the_ledger(events)
            for event in events:
                for name in BOOKING_FIELDS:
                    event.pop(name, None)
                outputs.by_id[str(event["event_id"])] = event
            outputs.written += len(events)
    return outputs


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(customers=150, days=365, seed=8, start=datetime(2028, 1, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def reference(simulation: Simulation, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    outputs = run_pipeline(simulation, tmp_path_factory.mktemp("uninterrupted"), faults=[])
    kinds = outputs.count()
    print("uninterrupted:", dict(kinds))
    return outputs


def assert_same(reference: Outputs, got: Outputs) -> None:
    """Nothing lost, nothing extra, every output the same."""
    assert_same_events(reference.by_id, got.by_id, of="an uninterrupted run")


def kill(*services: str) -> Fault:
    def fault(pipeline: Pipeline) -> str:
        pipeline.kill(*services)
        return "SIGKILL " + "+".join(services)

    return fault


def scale(out: bool) -> Fault:
    def fault(pipeline: Pipeline) -> str:
        for service in SERVICES:
            (pipeline.scale_out if out else pipeline.scale_in)(service)
        return "a second process of each service " + ("started" if out else "stopped")

    return fault


def broker_restart(pipeline: Pipeline) -> str:
    pipeline.restart_broker(down_seconds=5)
    return "broker stopped for 5 s and started again"


def report(name: str, reference: Outputs, got: Outputs) -> None:
    """The figures docs/reliability.md records, on the test's output (pytest -s)."""
    print(
        f"\n{name}: {'; '.join(got.faults)}; in {reference.events_in} events; "
        f"out {len(got.by_id)} unique outputs ({got.written} records, "
        f"{got.written - len(got.by_id)} re-sent with the same id); uninterrupted "
        f"{len(reference.by_id)} ({reference.written} records)"
    )


def test_each_worker_killed_in_turn_changes_nothing(
    simulation: Simulation, reference: Outputs, tmp_path: Path
) -> None:
    order = random.Random(3).sample(SERVICES, len(SERVICES))
    faults = [(6.0 + 8 * n, kill(service)) for n, service in enumerate(order)]
    got = run_pipeline(simulation, tmp_path, faults)
    report("one at a time", reference, got)
    assert_same(reference, got)


def test_all_workers_killed_together_three_times_changes_nothing(
    simulation: Simulation, reference: Outputs, tmp_path: Path
) -> None:
    rng = random.Random(4)
    faults = [(at + rng.uniform(0, 4), kill(*SERVICES)) for at in (6.0, 18.0, 30.0)]
    got = run_pipeline(simulation, tmp_path, faults)
    report("all together", reference, got)
    assert_same(reference, got)


def test_scaling_from_one_process_to_two_and_back_changes_nothing(
    simulation: Simulation, reference: Outputs, tmp_path: Path
) -> None:
    got = run_pipeline(simulation, tmp_path, [(8.0, scale(out=True)), (28.0, scale(out=False))])
    report("1 -> 2 -> 1", reference, got)
    assert_same(reference, got)


def test_a_broker_restart_mid_stream_changes_nothing(
    simulation: Simulation, reference: Outputs, tmp_path: Path
) -> None:
    got = run_pipeline(simulation, tmp_path, [(15.0, broker_restart)])
    report("broker restart", reference, got)
    assert_same(reference, got)


def test_three_processes_a_service_on_twelve_partitions_one_killed_change_nothing(
    simulation: Simulation, reference: Outputs, tmp_path: Path
) -> None:
    faults = [(12.0, kill(*(f"{service}#2" for service in SERVICES)))]
    got = run_pipeline(simulation, tmp_path, faults, processes=3, partitions=12)
    report("3 processes a service, 12 partitions, one of each killed", reference, got)
    assert_same(reference, got)


# -- on a three-node cluster ----------------------------------------------------------------


def cluster_of(pipeline: Pipeline) -> LocalCluster:
    assert isinstance(pipeline.broker, LocalCluster)
    return pipeline.broker


def input_leader(cluster: LocalCluster) -> int:
    """The node that leads the most partitions of the input topic."""

    async def leaders() -> Counter[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            (topic,) = await admin.describe_topics([ACCOUNT_EVENTS.name])
            return Counter(int(p["leader"]) for p in topic["partitions"])
        finally:
            await admin.close()

    return asyncio.run(leaders()).most_common(1)[0][0]


def wait_fully_replicated(cluster: LocalCluster, timeout: float = 120) -> None:
    """Until every partition of every topic has all its replicas in sync again, as an operator
    waits between the nodes of a rolling restart."""

    async def behind() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        try:
            names = await admin.list_topics()
            topics = await admin.describe_topics(list(names))
            return sum(len(p["isr"]) < len(p["replicas"]) for t in topics for p in t["partitions"])
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout
    while (left := asyncio.run(behind())) > 0:
        assert time.monotonic() < deadline, f"{left} partitions still under-replicated"
        time.sleep(1)


def input_leader_killed(down_seconds: float) -> Fault:
    def fault(pipeline: Pipeline) -> str:
        cluster = cluster_of(pipeline)
        node = input_leader(cluster)
        cluster.node(node).stop(kill=True)
        time.sleep(down_seconds)
        cluster.node(node).start(timeout=120)
        return f"SIGKILL node {node} (the input's leader), started again {down_seconds:.0f} s later"

    return fault


def node_stopped(node: int, down_seconds: float) -> Fault:
    def fault(pipeline: Pipeline) -> str:
        cluster = cluster_of(pipeline)
        cluster.node(node).stop()
        time.sleep(down_seconds)
        cluster.node(node).start(timeout=120)
        return f"node {node} stopped for {down_seconds:.0f} s"

    return fault


def rolling_restart(pipeline: Pipeline) -> str:
    cluster = cluster_of(pipeline)
    for node in cluster.nodes:
        node.stop()
        node.start(timeout=120)
        wait_fully_replicated(cluster)
    return "rolling restart of the three nodes"


def test_on_a_cluster_the_input_leader_killed_changes_nothing(
    simulation: Simulation, reference: Outputs, tmp_path: Path
) -> None:
    got = run_pipeline(simulation, tmp_path, [(10.0, input_leader_killed(15))], nodes=3)
    report("cluster, input leader killed", reference, got)
    assert_same(reference, got)


def test_on_a_cluster_a_node_stopped_past_the_session_timeout_changes_nothing(
    simulation: Simulation, reference: Outputs, tmp_path: Path
) -> None:
    # The workers' session timeout is 8 s (tests/integration/stack.py): down three times that.
    got = run_pipeline(simulation, tmp_path, [(10.0, node_stopped(2, 25))], nodes=3)
    report("cluster, a node stopped", reference, got)
    assert_same(reference, got)


def test_on_a_cluster_a_rolling_restart_changes_nothing(
    simulation: Simulation, reference: Outputs, tmp_path: Path
) -> None:
    got = run_pipeline(simulation, tmp_path, [(8.0, rolling_restart)], nodes=3)
    report("cluster, rolling restart", reference, got)
    assert_same(reference, got)
