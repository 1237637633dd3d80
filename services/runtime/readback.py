"""Reading a topic back from its first record to its current end, for the evaluator and the
tests: a plain aiokafka consumer with no group, so it never disturbs the services' offsets.
Also the groups' offsets, read (`committed_offsets`) and, for a new group, set
(`start_group_at`), for the bench, the demo's wait and the tests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from services.runtime.kafka_security import client_options


@dataclass(frozen=True)
class Consumed:
    """A record read back from a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


async def partitions_of(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of these topics, from fresh metadata (none for a missing topic)."""
    await consumer._client.force_metadata_update()
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or [])
    ]


async def topic_ends(bootstrap: list[str] | str, topics: list[str]) -> dict[str, dict[int, int]]:
    """The next offset of every partition of each topic (topics that do not exist: none)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **client_options()
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topics)
        ends = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
    return _by_topic({tp: offset for tp, offset in ends.items()})


async def committed_offsets(
    bootstrap: list[str] | str, groups: list[str]
) -> dict[str, dict[str, dict[int, int]]]:
    """The offsets each consumer group has committed, by topic and partition. A group whose
    coordinator is not available yet (the offsets topic still being made or loaded, on a busy
    or restarted broker) is asked again for up to `COORDINATOR_WAIT_SECONDS`: the bench's
    100,000-customer run once stopped on it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options())
    await admin.start()
    try:
        return {group: _by_topic(await _group_offsets(admin, group)) for group in groups}
    finally:
        await admin.close()


COORDINATOR_WAIT_SECONDS = 30.0


async def _group_offsets(admin: AIOKafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    deadline = time.monotonic() + COORDINATOR_WAIT_SECONDS
    while True:
        try:
            found = await admin.list_consumer_group_offsets(group)
            return {tp: meta.offset for tp, meta in found.items()}
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def start_group_at(
    bootstrap: list[str] | str, group: str, topic: str, offsets: dict[int, int]
) -> None:
    """Commit a consumer group's offsets on a topic, as an operator starting a new group from a
    position does: its workers then begin there instead of at the earliest record."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **client_options()
    )
    await consumer.start()
    try:
        positions = {TopicPartition(topic, p): offset for p, offset in offsets.items()}
        consumer.assign(list(positions))
        await consumer.commit(positions)
    finally:
        await consumer.stop()


def _by_topic(offsets: dict[TopicPartition, int]) -> dict[str, dict[int, int]]:
    found: dict[str, dict[int, int]] = {}
    for tp, offset in offsets.items():
        found.setdefault(tp.topic, {})[tp.partition] = offset
    return found


async def read_topics(
    bootstrap: list[str] | str, topics: list[str], limit_seconds: float = 60
) -> dict[str, list[Consumed]]:
    """Every record now in each topic (a topic that does not exist reads as empty)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, **client_options()
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topics)
        out: dict[str, list[Consumed]] = {topic: [] for topic in topics}
        if not partitions:
            return out
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + limit_seconds

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"could not read {', '.join(topics)} to the end in {limit_seconds} s"
                )
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                out[tp.topic].extend(
                    Consumed(r.partition, r.offset, r.key, r.value, dict(r.headers))
                    for r in records
                    if r.offset < ends[tp]
                )
        return out
    finally:
        await consumer.stop()


def read_topic(bootstrap: list[str] | str, topic: str, timeout: float = 60) -> list[Consumed]:
    """Every record now in one topic."""
    return asyncio.run(read_topics(bootstrap, [topic], timeout))[topic]
