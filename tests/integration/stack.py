"""Running Rapport's processes against the session's broker, and reading topics back."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from prometheus_client.parser import text_string_to_metric_families

from schemas.topics import (
    ACCOUNT_EVENTS,
    DLQ_HEADER_ERROR,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SERVICE,
    DLQ_HEADER_SOURCE_OFFSET,
    DLQ_HEADER_SOURCE_PARTITION,
    DLQ_HEADER_SOURCE_TOPIC,
)
from services.runtime.broker import LocalBroker
from services.runtime.cluster import LocalCluster
from services.runtime.osutil import free_port
from services.runtime.readback import Consumed, read_topic

# Overridable, like RAPPORT_TEST_BROKER_PORT, so that two test sessions can share a machine.
METRICS_PORT_BASE = int(os.environ.get("RAPPORT_TEST_METRICS_PORT_BASE", "19300"))
API_PORT_BASE = int(os.environ.get("RAPPORT_TEST_API_PORT_BASE", "18300"))


def service_env(
    kafka: LocalBroker | LocalCluster, home: Path, instance: str | None = None
) -> dict[str, str]:
    """Environment of a Rapport process pointed at the session's broker and home."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "RAPPORT_BROKER_PORT": str(kafka.port),
        "RAPPORT_HOME": str(home),
        "RAPPORT_METRICS_PORT_BASE": str(METRICS_PORT_BASE),
        "RAPPORT_API_PORT_BASE": str(API_PORT_BASE),
        "RAPPORT_INSTANCE": instance or uuid.uuid4().hex[:8],
        # A killed worker's partitions move after this long (the broker's minimum is 6 s).
        "RAPPORT_CONSUMER_SESSION_TIMEOUT_SECONDS": "8",
    }
    env.pop("DATABASE_URL", None)
    return env


def rapport(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a `rapport` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class RunningWorker:
    """A worker process and where to read its metrics."""

    process: subprocess.Popen[bytes]
    metrics_url: str
    log: Path

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of the worker's /metrics as (name, sorted labels) -> value."""
        text = httpx.get(self.metrics_url, timeout=2).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def total(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        return sum(
            value
            for (sample, sample_labels), value in self.metrics().items()
            if sample == name and labels.items() <= dict(sample_labels).items()
        )

    def wait_for(self, name: str, expected: float, timeout: float = 120, **labels: str) -> float:
        """Wait until a counter reaches `expected`; returns its value either way."""
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"worker exited:\n{self.log.read_text()[-3000:]}"
            try:
                value = self.total(name, **labels)
            except httpx.HTTPError:
                continue  # a busy worker may drop a scrape; the next one will do
            if value >= expected:
                return value
            time.sleep(0.25)
        return value


@contextmanager
def worker(
    service: str, env: dict[str, str], log_dir: Path, command: list[str] | None = None
) -> Iterator[RunningWorker]:
    """Start `rapport worker <service>` (or `python -m` `command`, an app in the service's
    place), wait for its metrics endpoint, stop it afterwards."""
    log = log_dir / f"worker-{service}-{env['RAPPORT_INSTANCE']}.log"
    index = ("lifecycle", "referral", "rewards", "notify").index(service) + 1
    url = f"http://127.0.0.1:{int(env['RAPPORT_METRICS_PORT_BASE']) + index}/metrics"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *(command or ["services.cli", "worker", service])],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = RunningWorker(process, url, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"worker exited:\n{log.read_text()[-3000:]}"
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "worker metrics never answered"
                time.sleep(0.2)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


DEPLOY = Path(__file__).parents[2] / "deploy"


class Prometheus:
    """A real Prometheus server (Debian's package) scraping running workers every second, with
    Rapport's alert rules loaded; PromQL through its HTTP API."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def answer(self, promql: str) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(
            f"{self.url}/api/v1/query", params={"query": promql}, timeout=5
        ).json()
        return found

    def query(self, promql: str) -> float | None:
        """The first sample's value, or None when the query selects nothing."""
        result = self.answer(promql)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, at_least: float | None = None, timeout: float = 60) -> float:
        """The query's value once it has one (after the first scrapes), and once it has
        reached `at_least` when given; the last value when the time is up."""
        deadline = time.monotonic() + timeout
        value: float | None = None
        while time.monotonic() < deadline:
            try:
                value = self.query(promql)
            except (httpx.HTTPError, KeyError, ValueError):
                value = None
            if value is not None and (at_least is None or value >= at_least):
                return value
            time.sleep(0.5)
        if value is None:
            raise AssertionError(f"Prometheus never answered {promql}")
        return value


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AssertionError(
            f"{name} is needed (Debian package prometheus; ./run test installs it)"
        )
    return found


@contextmanager
def prometheus(workers: Iterable[RunningWorker], work_dir: Path) -> Iterator[Prometheus]:
    """Start a Prometheus scraping these workers; stop it afterwards."""
    port = free_port()
    targets = [w.metrics_url.removeprefix("http://").removesuffix("/metrics") for w in workers]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "rules" / "rapport.yml")],
        "scrape_configs": [
            {"job_name": "rapport-workers", "static_configs": [{"targets": targets}]}
        ],
    }
    (work_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = work_dir / "prometheus.log"
    server = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={work_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={work_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        yield Prometheus(port)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\n{log.read_text()[-2000:]}") from failed
    finally:
        server.terminate()
        server.wait(timeout=30)


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Send (key, value) records and wait until the broker has them all, each once (an
    idempotent producer, as a core bank's feed is: a batch re-sent after a leader failed is
    not written twice)."""

    async def send() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())


def produce_with_headers(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
) -> None:
    """Send (key, value, headers) records and wait until the broker has them all."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value, headers in records:
                await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(send())


def dead_letter_of_the_input(
    bootstrap: str,
    service: str,
    run: str,
    dlq: str = ACCOUNT_EVENTS.dlq,
    source: str = ACCOUNT_EVENTS.name,
) -> bytes:
    """Put on a dead-letter topic (the input's) a truncated event of `source` that `service`
    refused, with the headers a worker writes; returns its value."""
    value = f'{{"event_id": "{run}", "truncated'.encode()
    headers = [
        (DLQ_HEADER_ERROR, b"the value is not valid JSON"),
        (DLQ_HEADER_REASON, b"malformed_json"),
        (DLQ_HEADER_SOURCE_TOPIC, source.encode()),
        (DLQ_HEADER_SOURCE_PARTITION, b"0"),
        (DLQ_HEADER_SOURCE_OFFSET, b"7"),
        (DLQ_HEADER_SERVICE, service.encode()),
    ]
    produce_with_headers(bootstrap, dlq, [(run.encode(), value, headers)])
    return value


def read_all(bootstrap: str, topic: str, timeout: float = 10) -> list[Consumed]:
    """Every record currently in a topic, from the first offset to the end."""
    return read_topic(bootstrap, topic, timeout)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The next offset of every partition of a topic."""

    async def ends() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            found = await consumer.end_offsets(partitions)
            return {tp.partition: offset for tp, offset in found.items()}
        finally:
            await consumer.stop()

    return asyncio.run(ends())


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets a consumer group has committed on a topic (missing partitions: none yet)."""

    async def committed() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            found = await admin.list_consumer_group_offsets(group)
            return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == topic}
        except GroupCoordinatorNotAvailableError:
            return {}  # the offsets topic is still being created on a fresh broker
        finally:
            await admin.close()

    return asyncio.run(committed())


def wait_until_consumed(
    bootstrap: str, group: str, topic: str, running: RunningWorker, timeout: float = 180
) -> None:
    """Wait until a group has committed every record of a topic as it is now."""
    ends = end_offsets(bootstrap, topic)
    deadline = time.monotonic() + timeout

    def behind() -> dict[int, tuple[int, int]]:
        committed = committed_offsets(bootstrap, group, topic)
        # A partition with no records has nothing to commit.
        return {
            p: (committed.get(p, 0), end) for p, end in ends.items() if committed.get(p, 0) < end
        }

    while lagging := behind():
        assert running.process.poll() is None, f"worker exited:\n{running.log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"{group} did not finish {topic} in {timeout} s: (committed, end) {lagging}"
        )
        time.sleep(1)


def records_since(bootstrap: str, topic: str, marks: dict[int, int]) -> list[Consumed]:
    """The records of a topic at or after the given offsets."""
    return [r for r in read_all(bootstrap, topic) if r.offset >= marks.get(r.partition, 0)]


def assert_same_events(
    reference: dict[str, dict[str, Any]],
    got: dict[str, dict[str, Any]],
    of: str = "a reference run",
) -> None:
    """Events by event id: nothing lost, nothing extra, every one the same; a failure names the
    events and the fields that differ (a whole-dict diff of hundreds of events hides them)."""

    def named(event: dict[str, Any]) -> str:
        who = event.get("customer_id") or event.get("referee") or event.get("referral_id")
        return f"{event['type']} {who} {event.get('occurred_at')}"

    missing = sorted(reference.keys() - got.keys())
    extra = sorted(got.keys() - reference.keys())
    assert not missing, f"{len(missing)} events of {of} lost, e.g. " + "; ".join(
        named(reference[k]) for k in missing[:8]
    )
    assert not extra, f"{len(extra)} events {of} does not make, e.g. " + "; ".join(
        named(got[k]) for k in extra[:8]
    )

    def difference(k: str) -> str:
        was, now = reference[k], got[k]
        fields = sorted(f for f in was.keys() | now.keys() if was.get(f) != now.get(f))
        return f"{named(was)}: " + ", ".join(
            f"{f} {was.get(f)!r} -> {now.get(f)!r}" for f in fields
        )

    differing = [k for k in reference if reference[k] != got[k]]
    assert not differing, f"{len(differing)} events differ from {of}'s, e.g. " + "; ".join(
        difference(k) for k in differing[:6]
    )
