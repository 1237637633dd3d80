"""Creating Rapport's topics on whatever cluster the settings name."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import ALL_TOPICS, TopicSpec, dead_letter_topics
from services.runtime.kafka_security import client_options
from services.runtime.settings import RuntimeSettings


@dataclass(frozen=True)
class TopicResult:
    """What happened to one topic."""

    name: str
    created: bool
    partitions: int
    config: dict[str, str]


def every_topic() -> tuple[TopicSpec, ...]:
    """Input, output and dead-letter topics."""
    return (*ALL_TOPICS, *dead_letter_topics())


async def create_topics(
    settings: RuntimeSettings,
    partitions: int | None = None,
    specs: tuple[TopicSpec, ...] | None = None,
) -> list[TopicResult]:
    """Create every topic (or those of `specs`) that does not exist yet; existing ones are left
    as they are."""
    count = partitions or settings.topic_partitions
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_list, request_timeout_ms=30000, **client_options()
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        results = []
        for spec in specs if specs is not None else every_topic():
            if spec.name in existing:
                results.append(TopicResult(spec.name, False, count, spec.config()))
                continue
            new = NewTopic(
                spec.name,
                num_partitions=count,
                replication_factor=settings.topic_replication_factor,
                topic_configs=spec.config(),
            )
            try:
                await admin.create_topics([new])
                results.append(TopicResult(spec.name, True, count, spec.config()))
            except TopicAlreadyExistsError:
                results.append(TopicResult(spec.name, False, count, spec.config()))
        await _wait_for_leaders(admin, [r.name for r in results])
        return results
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    # A topic is usable only once each partition has a leader; producing earlier fails.
    for _ in range(100):
        described = await admin.describe_topics(names)
        if all(
            t.get("error_code", 0) == 0 and all(p.get("leader", -1) >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.1)
