"""Creating Rapport's topics on whatever cluster the settings name."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import ALL_TOPICS, TopicSpec, dead_letter_topics
from services.runtime.kafka_environments import KafkaEnvironment, environment, environment_for
from services.runtime.kafka_security import client_options
from services.runtime.settings import RuntimeSettings


@dataclass(frozen=True)
class TopicResult:
    """What happened to one topic."""

    name: str
    created: bool
    partitions: int
    replication_factor: int
    config: dict[str, str]


def every_topic() -> tuple[TopicSpec, ...]:
    """Input, output and dead-letter topics."""
    return (*ALL_TOPICS, *dead_letter_topics())


async def create_topics(
    settings: RuntimeSettings,
    partitions: int | None = None,
    specs: tuple[TopicSpec, ...] | None = None,
) -> list[TopicResult]:
    """Create every topic (or those of `specs`) that does not exist yet, replicated as the
    cluster's environment says (deploy/kafka/environments.toml); existing ones are left as
    they are."""
    count = partitions or settings.topic_partitions
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_list, request_timeout_ms=30000, **client_options()
    )
    await admin.start()
    try:
        kafka = await cluster_environment(admin, settings)
        existing = set(await admin.list_topics())
        results = []
        for spec in specs if specs is not None else every_topic():
            config = {**spec.config(), "min.insync.replicas": str(kafka.min_insync_replicas)}
            result = TopicResult(spec.name, False, count, kafka.replication_factor, config)
            if spec.name not in existing:
                new = NewTopic(
                    spec.name,
                    num_partitions=count,
                    replication_factor=kafka.replication_factor,
                    topic_configs=config,
                )
                try:
                    await admin.create_topics([new])
                    result = replace(result, created=True)
                except TopicAlreadyExistsError:
                    pass
            results.append(result)
        described = await _wait_for_leaders(admin, [r.name for r in results])
        # What each topic has, for those that existed before: they are left as they are.
        return [
            replace(
                r,
                partitions=len(d["partitions"]),
                replication_factor=len(d["partitions"][0]["replicas"]),
            )
            if (d := described.get(r.name)) and d["partitions"]
            else r
            for r in results
        ]
    finally:
        await admin.close()


async def cluster_environment(
    admin: AIOKafkaAdminClient, settings: RuntimeSettings
) -> KafkaEnvironment:
    """The environment RAPPORT_KAFKA_ENVIRONMENT names, or the one the cluster's size fits."""
    if settings.kafka_environment:
        return environment(settings.kafka_environment)
    described = await admin.describe_cluster()
    return environment_for(len(described["brokers"]))


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, Any]:
    """Each topic as the cluster describes it, once every partition has a leader (a topic is
    usable only then: producing earlier fails), or after 10 s."""
    described: list[Any] = []
    for _ in range(100):
        described = await admin.describe_topics(names)
        if all(
            t.get("error_code", 0) == 0 and all(p.get("leader", -1) >= 0 for p in t["partitions"])
            for t in described
        ):
            break
        await asyncio.sleep(0.1)
    return {t["topic"]: t for t in described}
