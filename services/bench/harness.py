"""`rapport bench`: Rapport's throughput, memory and recovery against the ceiling of its own
stack, on a broker of its own (RAPPORT_HOME/bench, the local broker's port + 100) with simulated
events preloaded into the input topic.

Each figure is the median of `runs` runs, each on a fresh consumer group (a new instance id),
so that every run reads the whole preloaded topic. A figure is printed with the machine it came
from; `--json` prints the same as JSON.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, get_args

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import MetaData, make_url

from schemas.topics import ACCOUNT_EVENTS, ALL_TOPICS, NOTIFICATIONS, STAGE_CHANGED
from services.runtime import db, tracing
from services.runtime.allocator import with_jemalloc
from services.runtime.broker import LocalBroker
from services.runtime.kafka_security import client_options
from services.runtime.produce import produce_records, records_from_lines, send_and_confirm
from services.runtime.readback import (
    committed_offsets,
    partitions_of,
    start_group_at,
    topic_ends,
)
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings, TableStore
from services.runtime.topics import create_topics
from services.runtime.worker import CLEAN_STOP
from services.simulator.population import START
from services.simulator.simulate import simulate

INPUT_CONSUMERS = ("lifecycle", "referral", "notify")
# The workers measured alone on what the pipeline gave them (`Bench.alone_time`), in an order
# where none reads a topic that one measured before it has written to again: a worker alone
# publishes its outputs once more, and notify, last until 2026-12-06, read referral's and
# rewards' outputs twice (the duplicates cost it little: 30.4 s last, 32.3 s first).
DOWNSTREAM = ("notify", "rewards", "referral")
RECORD_COUNTERS = ("rapport_events_consumed_total", "rapport_events_dead_lettered_total")
# Where the lifecycle worker may keep its customers' states (services/lifecycle/config.py).
STORES: tuple[str, ...] = get_args(TableStore)
# Groups of figures `rapport bench --only` can pick.
# "scale-out" (1-3 processes a service, with "throughput") is left out of the default: five
# more drains, each bounded by this host's cores.
SECTIONS = frozenset({"probes", "throughput", "memory", "recovery", "latency"})
KNOWN_SECTIONS = SECTIONS | {"scale-out"}
# About 63 valid events per simulated customer and year.
EVENTS_PER_CUSTOMER_YEAR = 63


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    runs: list[float] = field(default_factory=list)
    note: str = ""


@dataclass
class Report:
    machine: dict[str, Any]
    events: int
    customers: int
    figures: list[Figure] = field(default_factory=list)

    def add(self, name: str, runs: list[float], unit: str, note: str = "") -> Figure:
        figure = Figure(name, statistics.median(runs), unit, runs, note)
        self.figures.append(figure)
        return figure

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine() -> dict[str, Any]:
    memory = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024
    return {
        "cpus": os.cpu_count(),
        "memory_mib": memory,
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


class Bench:
    def __init__(
        self, base: RuntimeSettings, external: bool, events: int, customers: int, runs: int
    ) -> None:
        self.events, self.customers, self.runs = events, customers, runs
        self.home = base.home / "bench"
        # Its own broker next to the local one, so the demo's topics are left alone.
        self.broker = None if external else LocalBroker(self.home, port=base.broker_port + 100)
        bootstrap = base.kafka_bootstrap_servers if self.broker is None else self.broker.bootstrap
        self.settings = RuntimeSettings(
            kafka_bootstrap_servers=bootstrap,
            home=self.home,
            # A bank's database when DATABASE_URL names one; else a SQLite file of its own.
            database_url=base.database_url or f"sqlite:///{self.home / 'bench.db'}",
            metrics_port_base=base.metrics_port_base + 200,
        )
        self.report = Report(machine(), events, customers)
        self.preloaded = 0

    # -- set-up --------------------------------------------------------------------------------

    def prepare(self, say: Callable[[str], None]) -> None:
        database = make_url(self.settings.resolved_database_url).database or ""
        if not self.settings.resolved_database_url.startswith("sqlite") and "bench" not in database:
            # Every run empties Rapport's tables (below): never a bank's working database.
            raise SystemExit(
                f"rapport bench empties the database it uses before every run, and DATABASE_URL "
                f"names {database!r}: point it at a database of the bench's own, with 'bench' "
                "in its name (rapport_bench, say), or unset it for a SQLite file of its own"
            )
        if self.broker is not None:
            self.broker.start()
        asyncio.run(create_topics(self.settings))
        db.upgrade(self.settings.resolved_database_url)
        ends = asyncio.run(topic_ends(self.settings.bootstrap_list, [ACCOUNT_EVENTS.name]))
        held = sum(ends.get(ACCOUNT_EVENTS.name, {}).values())
        # What was preloaded, as (events, customers): reused only when the topic holds exactly
        # that (the latency runs add openings of their own after it).
        marker = self.home / "preloaded.json"
        preloaded = orjson.loads(marker.read_bytes()) if marker.exists() else None
        if held >= self.events and preloaded == [held, self.customers]:
            say(f"input topic already holds {held:,} events: reused")
            self.preloaded = held
            return
        if held:
            say("input topic holds other events: made again")
            self.reset_outputs(keep_input=False)
        days = self.simulated_days()
        say(f"simulating {self.customers:,} customers over {days} days")
        lines = simulate(customers=self.customers, days=days, seed=42).lines[: self.events]
        asyncio.run(produce_records(self.settings, records_from_lines(lines), total=len(lines)))
        self.preloaded = len(lines)
        marker.write_bytes(orjson.dumps([self.preloaded, self.customers]))

    def simulated_days(self) -> int:
        """The days the preloaded input covers, from the simulator's first day."""
        years = self.events / self.customers / EVENTS_PER_CUSTOMER_YEAR
        return max(int(years * 365) + 1, 7)

    def empty_database(self) -> None:
        """Every row of Rapport's tables deleted; the schema and its migration stay."""
        engine = db.get_engine(self.settings.resolved_database_url)
        tables = MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            for table in reversed(tables.sorted_tables):
                if table.name != "alembic_version":
                    connection.execute(table.delete())

    # -- measurements --------------------------------------------------------------------------

    def ceiling(self) -> float:
        """Records per second a bare aiokafka consumer drains the input at, decoding nothing."""

        async def drain() -> float:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.bootstrap_list,
                enable_auto_commit=False,
                max_partition_fetch_bytes=8 * 1024 * 1024,
                fetch_max_bytes=64 * 1024 * 1024,
                **client_options(),
            )
            await consumer.start()
            try:
                partitions = await partitions_of(consumer, [ACCOUNT_EVENTS.name])
                consumer.assign(partitions)
                await consumer.seek_to_beginning(*partitions)
                ends = await consumer.end_offsets(partitions)
                total = sum(ends.values())
                seen = 0
                started = time.perf_counter()
                while seen < total:
                    batches = await consumer.getmany(timeout_ms=1000, max_records=100_000)
                    seen += sum(len(b) for b in batches.values())
                return seen / (time.perf_counter() - started)
            finally:
                await consumer.stop()

        return asyncio.run(drain())

    def reset_outputs(self, keep_input: bool = True) -> None:
        """Delete every topic but the input, then create Rapport's topics again: a run's
        downstream workers then read only what its own upstream workers produce. Empty the
        database too: rewards and notify remember the events they took, and on a used database
        a run measured them skipping duplicates (docs/benchmarks.md, 2026-12-04)."""
        self.empty_database()

        async def reset() -> None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.settings.bootstrap_list, **client_options()
            )
            await admin.start()
            try:
                doomed = [
                    t
                    for t in await admin.list_topics()
                    if (t != ACCOUNT_EVENTS.name or not keep_input) and not t.startswith("__")
                ]
                if doomed:
                    await admin.delete_topics(doomed)
                # Deletion completes in the background; creating a name still being deleted
                # fails, so wait until none is listed.
                for _ in range(300):
                    if not set(doomed) & set(await admin.list_topics()):
                        break
                    await asyncio.sleep(0.1)
            finally:
                await admin.close()
            await create_topics(self.settings)

        asyncio.run(reset())

    def drain_time(self, services: dict[str, int], probe: str | None = None) -> float:
        """Seconds from the first record taken by `services` (name -> processes), on a fresh
        group and fresh output topics, until every group has committed the whole input (worker
        start-up excluded). `probe`: one of services.bench.probe's workers in the lifecycle
        worker's place."""
        self.reset_outputs()
        instance = uuid.uuid4().hex[:8]
        with self.workers(services, instance, probe=probe) as processes:
            started = self.first_record(processes)
            if probe is not None:
                # Nothing to wait for after the last record: not even the next commit, which
                # may come up to the commit interval (`RAPPORT_COMMIT_INTERVAL_SECONDS`) later.
                return self.wait_counted(processes, self.preloaded) - started
            return self.wait_committed(instance, list(services), processes) - started

    def alone_time(self, service: str) -> float:
        """Seconds for one `service` worker, alone on a fresh group and an emptied database,
        to take what it consumes in the pipeline: the topics as the whole pipeline's drain
        left them (run that first), from its first record until its group has committed the
        end of each of its input topics and it has been quiet for 3 s. Its outputs go to the
        topics again: nothing downstream reads them."""
        self.empty_database()
        instance = uuid.uuid4().hex[:8]
        topics = [t.name for t in ALL_TOPICS if service in t.consumers]
        settings = self.settings.model_copy(update={"instance": instance})
        ends = asyncio.run(topic_ends(settings.bootstrap_list, topics))
        if service == "notify":
            # Notify reads a lead's tier once the lifecycle group has taken the input that far
            # (services/notify/agents.py): in the pipeline it had taken all of it.
            asyncio.run(self.start_groups_at_the_end(instance, ["lifecycle"]))
        with self.workers({service: 1}, instance) as processes:
            started = self.first_record(processes)
            return self.wait_committed(instance, [service], processes, ends) - started

    def memory_per_customer(self, store: str) -> tuple[float, float]:
        """(RSS in MiB, bytes per customer) of a lifecycle worker with its states in `store`
        that has read the whole input: its RSS then, less its RSS when it took its first
        record."""
        self.reset_outputs()
        instance = uuid.uuid4().hex[:8]
        with self.workers({"lifecycle": 1}, instance, extra=_store_env(store)) as processes:
            self.first_record(processes)
            start = rss(processes[0][1].pid)
            self.wait_committed(instance, ["lifecycle"], processes)
            full = rss(processes[0][1].pid)
        return full / 2**20, (full - start) / self.customers

    def recovery_time(self, store: str, keep: bool) -> float:
        """Seconds for a lifecycle worker with every customer's state in `store`, stopped
        cleanly and started again, to take input again (process start included). A memory
        store is read back from the changelog; a RocksDB store is kept (`keep`) or removed
        first, and so read back too. A new opening after the restart shows when it is ready."""
        self.reset_outputs()
        instance = uuid.uuid4().hex[:8]
        extra = _store_env(store)
        with self.workers({"lifecycle": 1}, instance, extra=extra) as processes:
            self.wait_committed(instance, ["lifecycle"], processes)
        if not keep:
            # Without the mark of a clean stop the worker removes its local stores.
            settings = self.settings.model_copy(update={"instance": instance})
            (settings.datadir("lifecycle") / CLEAN_STOP).unlink()
        with self.workers({"lifecycle": 1}, instance, extra=extra) as processes:
            started = time.monotonic()
            asyncio.run(self.send_probe())
            self.first_record(processes)
            return time.monotonic() - started

    async def send_probe(self) -> None:
        customer = f"BENCH-{uuid.uuid4().hex[:12]}"
        probe = {
            "event_id": f"{customer}-open",
            "event_type": "account.opened",
            # The feed's next event, the day after the preloaded input ends: a probe from the
            # wall clock, two years on, had every customer of its partition woken for his
            # deadlines of those years before it counted (16,000 at 100,000 customers: 10 of a
            # restart's 16 s), which is no restart's cost.
            "occurred_at": (START + timedelta(days=self.simulated_days())).isoformat(),
            "customer_id": customer,
            "account_id": f"{customer}-A",
        }
        await send_and_confirm(
            self.settings.bootstrap_list,
            [(ACCOUNT_EVENTS.name, customer.encode(), orjson.dumps(probe), [])],
        )

    def latency(self, rate: int, seconds: float) -> dict[str, list[float]]:
        """Seconds from an account opening's production to the stage change it causes, and to
        the notification that follows, with lifecycle and notify running and the openings
        produced at a steady `rate` for `seconds`. The workers start at the end of the
        preloaded input; each opening carries a trace id of its own, which its outputs carry
        on (W3C traceparent)."""
        self.reset_outputs()
        instance = uuid.uuid4().hex[:8]
        services = {"lifecycle": 1, "notify": 1}
        asyncio.run(self.start_groups_at_the_end(instance, list(services)))
        with self.workers(services, instance) as processes:
            asyncio.run(self.send_probe())
            self.first_record(processes)
            return asyncio.run(self.measure_latency(instance, rate, seconds))

    async def start_groups_at_the_end(self, instance: str, services: list[str]) -> None:
        settings = self.settings.model_copy(update={"instance": instance})
        ends = (await topic_ends(settings.bootstrap_list, [ACCOUNT_EVENTS.name]))[
            ACCOUNT_EVENTS.name
        ]
        for service in services:
            await start_group_at(
                settings.bootstrap_list, settings.app_id(service), ACCOUNT_EVENTS.name, ends
            )

    async def measure_latency(
        self, instance: str, rate: int, seconds: float
    ) -> dict[str, list[float]]:
        outputs = [STAGE_CHANGED.name, NOTIFICATIONS.name]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_list,
            enable_auto_commit=False,
            **client_options(),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_list, linger_ms=1, **client_options()
        )
        await consumer.start()
        await producer.start()
        sent: dict[str, float] = {}
        found: dict[str, dict[str, float]] = {topic: {} for topic in outputs}
        try:
            partitions = await partitions_of(consumer, outputs)
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)

            notify_group = self.settings.model_copy(update={"instance": instance}).app_id("notify")

            async def notify_caught_up() -> bool:
                """Whether notify has committed every stage change there is: it decides a
                batch of them in one transaction, and a batch can take longer than a quiet
                spell (the first runs ended inside one and counted a tenth of the
                notifications)."""
                ends = (await topic_ends(self.settings.bootstrap_list, [STAGE_CHANGED.name]))[
                    STAGE_CHANGED.name
                ]
                committed = await committed_offsets(self.settings.bootstrap_list, [notify_group])
                taken = committed[notify_group].get(STAGE_CHANGED.name, {})
                return all(taken.get(p, 0) >= end for p, end in ends.items())

            async def collect(until: float) -> None:
                # Every opening makes a stage change, not every one a notification: after the
                # last stage change, until notify has taken every stage change and
                # notifications stop coming for 3 s.
                quiet_since = time.monotonic()
                caught_up, asked = False, 0.0
                while time.monotonic() < until:
                    if produced.is_set() and len(found[STAGE_CHANGED.name]) >= len(sent):
                        if not caught_up and time.monotonic() - asked > 1:
                            asked = time.monotonic()
                            caught_up = await notify_caught_up()
                        if caught_up and time.monotonic() - quiet_since >= 3:
                            break
                    batches = await consumer.getmany(timeout_ms=200)
                    if batches:
                        quiet_since = time.monotonic()
                    for tp, records in batches.items():
                        for record in records:
                            trace = tracing.trace_id_of(record.headers)
                            if trace in sent and trace not in found[tp.topic]:
                                found[tp.topic][trace] = time.time() - sent[trace]

            produced = asyncio.Event()
            started = time.time()
            collecting = asyncio.create_task(collect(time.monotonic() + seconds + 120))
            tick, n = 0.01, 0
            at = datetime(2031, 1, 1, tzinfo=UTC)
            while (elapsed := time.time() - started) < seconds:
                due = int(elapsed * rate) + 1
                while n < due:
                    customer = f"LAT{instance}{n:08d}"
                    trace = uuid.uuid4().hex
                    value = orjson.dumps(
                        {
                            "event_id": f"{customer}-open",
                            "event_type": "account.opened",
                            "occurred_at": (at + timedelta(seconds=n)).isoformat(),
                            "customer_id": customer,
                            "account_id": f"{customer}-A",
                        }
                    )
                    sent[trace] = time.time()
                    await producer.send(
                        ACCOUNT_EVENTS.name,
                        value,
                        key=customer.encode(),
                        headers=[("traceparent", f"00-{trace}-{trace[:16]}-01".encode())],
                    )
                    n += 1
                await asyncio.sleep(tick)
            produced.set()
            await collecting
        finally:
            await producer.stop()
            await consumer.stop()
        return {topic: list(values.values()) for topic, values in found.items()} | {
            "sent": [float(len(sent))]
        }

    @staticmethod
    def wait_counted(processes: list[tuple[int, subprocess.Popen[bytes]]], total: int) -> float:
        """When these workers have together taken `total` records (monotonic time)."""
        while sum(scrape(port).get("records", 0) for port, _ in processes) < total:
            for _, process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited with {process.returncode}")
            # Not more often: each scrape costs the worker its /metrics page.
            time.sleep(0.1)
        return time.monotonic()

    @staticmethod
    def first_record(processes: list[tuple[int, subprocess.Popen[bytes]]]) -> float:
        """When the first of these workers has taken a record (monotonic time)."""
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            if any(scrape(port).get("records", 0) > 0 for port, _ in processes):
                return time.monotonic()
            for _, process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited with {process.returncode}")
            time.sleep(0.05)
        raise RuntimeError("no worker took a record within an hour")

    # -- processes -----------------------------------------------------------------------------

    @contextmanager
    def workers(
        self,
        services: dict[str, int],
        instance: str,
        extra: dict[str, str] | None = None,
        probe: str | None = None,
    ) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
        processes: list[tuple[int, subprocess.Popen[bytes]]] = []
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            for service, count in services.items():
                for n in range(count):
                    base = self.settings.metrics_port_base + 10 * n + 40 * len(processes)
                    port = base + SERVICE_NAMES.index(service) + 1
                    # Preloaded as `rapport up` and the image do (services/runtime/allocator.py).
                    env = with_jemalloc(
                        {
                            **os.environ,
                            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
                            "RAPPORT_HOME": str(self.home),
                            "DATABASE_URL": self.settings.resolved_database_url,
                            "RAPPORT_INSTANCE": instance,
                            "RAPPORT_METRICS_PORT_BASE": str(base),
                            "RAPPORT_LOG_LEVEL": "warn",
                            **(extra or {}),
                        }
                    )
                    log = (logs / f"{service}-{instance}-{n}.log").open("ab")
                    command = ["services.cli", "worker", service]
                    if probe is not None and service == "lifecycle":
                        command = ["services.bench.probe", probe]
                    process = subprocess.Popen(
                        [sys.executable, "-m", *command],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                    processes.append((port, process))
            yield processes
        finally:
            for _, process in processes:
                process.terminate()
            for _, process in processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()

    def wait_committed(
        self,
        instance: str,
        services: list[str],
        processes: list[tuple[int, subprocess.Popen[bytes]]],
        ends: dict[str, dict[int, int]] | None = None,
    ) -> float:
        """Until each service's group has committed the end of the input, or of each topic of
        `ends` (topic -> partition -> offset) it reads (returns when, in monotonic time), then
        until no worker finishes another record for 3 s (the referral steps go on after the
        input)."""
        settings = self.settings.model_copy(update={"instance": instance})
        if ends is None:
            # Rewards reads no account event: it is done when the others are, and quiet.
            services = [s for s in services if s in INPUT_CONSUMERS]
            ends = asyncio.run(topic_ends(settings.bootstrap_list, [ACCOUNT_EVENTS.name]))
        groups = [settings.app_id(s) for s in services]
        while True:
            for _, process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a worker exited with {process.returncode}")
            committed = asyncio.run(committed_offsets(settings.bootstrap_list, groups))
            if all(
                committed[group].get(topic, {}).get(p, 0) >= end
                for group in groups
                for topic, partitions in ends.items()
                for p, end in partitions.items()
            ):
                done = time.monotonic()
                break
            time.sleep(0.2)
        last = -1.0
        while True:
            now = sum(scrape(port).get("records", 0) for port, _ in processes)
            if now == last:
                return done
            last = now
            time.sleep(3)


def scrape(port: int) -> dict[str, float]:
    """A few totals of a worker's /metrics (empty while it does not answer)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return {}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (
                "rapport_events_consumed_total",
                "rapport_events_dead_lettered_total",
            ):
                values["records"] = values.get("records", 0) + sample.value
    return values


def rss(pid: int) -> float:
    """Resident set size of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def run(
    settings: RuntimeSettings,
    external: bool,
    events: int,
    customers: int,
    runs: int,
    say: Callable[[str], None],
    latency_rates: tuple[int, ...] = (1000, 5000),
    latency_seconds: float = 10,
    sections: frozenset[str] = SECTIONS,
    stores: tuple[str, ...] = STORES,
) -> Report:
    """Every figure of `sections` (the bare consumer's always, as the others' yardstick); the
    memory and recovery figures for each of `stores`."""
    bench = Bench(settings, external, events, customers, runs)
    bench.prepare(say)
    total = bench.preloaded
    report = bench.report
    report.events = total

    def repeat(what: str, measure: Callable[[], float]) -> list[float]:
        values = []
        for n in range(runs):
            values.append(measure())
            say(f"{what}: run {n + 1}/{runs}: {values[-1]:,.1f}")
        return values

    ceiling = report.add("bare aiokafka consumer", repeat("ceiling", bench.ceiling), "records/s")
    drains: dict[str, Figure] = {}
    for section, name, services, probe in (
        ("probes", "faust agent taking batches, doing nothing", {"lifecycle": 1}, "faust"),
        ("probes", "Rapport's consume path, decoding, doing nothing", {"lifecycle": 1}, "runtime"),
        ("throughput", "lifecycle worker", {"lifecycle": 1}, None),
        ("throughput", "two lifecycle worker processes", {"lifecycle": 2}, None),
        ("throughput", "whole pipeline (four workers)", dict.fromkeys(SERVICE_NAMES, 1), None),
        ("scale-out", "three lifecycle worker processes", {"lifecycle": 3}, None),
        (
            "scale-out",
            "whole pipeline, two processes a service",
            dict.fromkeys(SERVICE_NAMES, 2),
            None,
        ),
        (
            "scale-out",
            "whole pipeline, three processes a service",
            dict.fromkeys(SERVICE_NAMES, 3),
            None,
        ),
    ):
        if section in sections:
            seconds = repeat(name, partial(bench.drain_time, services, probe))
            rates = [total / s for s in seconds]
            drains[name] = report.add(
                name,
                rates,
                "events/s",
                f"{statistics.median(rates) / ceiling.value:.2%} of the bare consumer",
            )
    if "throughput" in sections:
        one, two = drains["lifecycle worker"].value, drains["two lifecycle worker processes"].value
        report.add("scale-out: 2 workers / 1 worker", [two / one], "x")
        faust = drains.get("faust agent taking batches, doing nothing")
        for service in DOWNSTREAM:
            # Each on the topics the last whole-pipeline drain left, in input events a second.
            rates = [total / s for s in repeat(service, partial(bench.alone_time, service))]
            rate = statistics.median(rates)
            shares = [f"{rate / ceiling.value:.2%} of the bare consumer"]
            if faust is not None:
                shares.append(f"{rate / faust.value:.2f} x the faust probe")
            report.add(f"{service} worker alone", rates, "events/s", "; ".join(shares))
    if {"throughput", "scale-out"} <= sections:
        cpus = f"{report.machine['cpus']} CPUs"
        for name, more, fewer in (
            ("3 lifecycle workers", "three lifecycle worker processes", "lifecycle worker"),
            (
                "pipeline with 2 processes a service",
                "whole pipeline, two processes a service",
                "whole pipeline (four workers)",
            ),
            (
                "pipeline with 3 processes a service",
                "whole pipeline, three processes a service",
                "whole pipeline (four workers)",
            ),
        ):
            ratio = drains[more].value / drains[fewer].value
            report.add(f"scale-out: {name} / 1", [ratio], "x", cpus)
    if "memory" in sections:
        for store in stores:
            rss_mib, per_customer = bench.memory_per_customer(store)
            report.add(f"lifecycle worker RSS, {store} store", [rss_mib], "MiB")
            report.add(f"lifecycle state per customer, {store} store", [per_customer], "bytes")
    if "recovery" in sections:
        for store, keep, how in (
            ("memory", False, "the changelog replayed"),
            ("rocksdb", True, "the local store kept"),
            ("rocksdb", False, "the local store removed, the changelog replayed"),
        ):
            if store not in stores:
                continue
            report.add(
                f"lifecycle recovery, {store} store, {how.split(',')[0]}",
                repeat(f"recovery ({store}, {how})", partial(bench.recovery_time, store, keep)),
                "s",
                f"{customers:,} customers, after a clean stop, process start included; {how}",
            )
    if "latency" in sections:
        for rate in latency_rates:
            measured = bench.latency(rate, latency_seconds)
            sent = int(measured["sent"][0])
            for topic, what in (
                (STAGE_CHANGED.name, "stage change"),
                (NOTIFICATIONS.name, "notification"),
            ):
                values = sorted(measured[topic])
                if not values:
                    report.add(f"latency to {what} at {rate:,}/s", [float("nan")], "s", "none came")
                    continue
                note = (
                    f"{len(values):,} of {sent:,} openings; p50 {_quantile(values, 0.5):.3f} s, "
                    f"p99 {_quantile(values, 0.99):.3f} s, max {values[-1]:.3f} s"
                )
                report.add(
                    f"latency to {what} at {rate:,}/s, p99", [_quantile(values, 0.99)], "s", note
                )
    return report


def _store_env(store: str) -> dict[str, str]:
    return {"RAPPORT_LIFECYCLE_STORE": store}


def _quantile(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)]
