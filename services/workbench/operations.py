"""What the Operations page shows and does: each worker's state, its lag and rate, and the dead
letters by reason, which an admin may replay (what `rapport dlq replay` does). These read
Kafka and the workers' metrics, not a service's API: no service owns them."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass

from aiokafka.errors import KafkaError

from schemas.topics import dead_letter_topics
from services.runtime import dlq
from services.runtime.observe import WorkerCounts, lag_by_service, read_workers
from services.runtime.settings import RuntimeSettings

# A page waits no longer for the broker: an unreachable one is said, not waited on.
KAFKA_TIMEOUT_SECONDS = 10.0
RATE_WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerRow:
    service: str
    up: bool
    accepted: int
    dead_lettered: int
    per_second: float | None
    # None: the group has committed nothing yet, or Kafka did not answer (`kafka_answered`).
    lag: int | None
    kafka_answered: bool


@dataclass(frozen=True)
class DeadLetterGroup:
    """The dead letters of one topic, service and reason, with the newest as a sample."""

    topic: str
    service: str
    reason: str
    count: int
    sample_error: str
    sample_source: str


async def workers(settings: RuntimeSettings, urls: dict[str, str]) -> list[WorkerRow]:
    """Each worker (its metrics at `urls`, else on this machine), with its records per second
    over a second's window and its lag."""
    started = time.monotonic()
    first = await asyncio.to_thread(read_workers, settings, urls)
    try:
        lag: dict[str, int] | None = await asyncio.wait_for(
            lag_by_service(settings), KAFKA_TIMEOUT_SECONDS
        )
    except (KafkaError, TimeoutError, OSError):
        lag = None
    await asyncio.sleep(max(RATE_WINDOW_SECONDS - (time.monotonic() - started), 0))
    second = await asyncio.to_thread(read_workers, settings, urls)
    elapsed = time.monotonic() - started

    def rate(before: WorkerCounts, after: WorkerCounts) -> float | None:
        if not (before.reachable and after.reachable):
            return None
        return max(after.all_records - before.all_records, 0) / elapsed

    return [
        WorkerRow(
            service=after.service,
            up=after.reachable,
            accepted=int(sum(after.consumed.values())),
            dead_lettered=int(sum(after.dead_lettered.values())),
            per_second=rate(before, after),
            lag=None if lag is None else lag.get(after.service),
            kafka_answered=lag is not None,
        )
        for before, after in zip(first, second, strict=True)
    ]


async def _letters(settings: RuntimeSettings) -> list[dlq.DeadLetter]:
    topics = [t.name for t in dead_letter_topics()]
    return await asyncio.wait_for(
        dlq.dead_letters(settings.bootstrap_list, topics), KAFKA_TIMEOUT_SECONDS
    )


async def dead_letter_groups(settings: RuntimeSettings) -> list[DeadLetterGroup] | None:
    """Dead letters by topic, service and reason (None: the broker did not answer)."""
    try:
        letters = await _letters(settings)
    except (KafkaError, TimeoutError, OSError):
        return None
    grouped: dict[tuple[str, str, str], list[dlq.DeadLetter]] = defaultdict(list)
    for letter in letters:
        grouped[(letter.topic, letter.service, letter.reason)].append(letter)
    return [
        DeadLetterGroup(topic, service, reason, len(group), group[-1].error, group[-1].source)
        for (topic, service, reason), group in sorted(grouped.items())
    ]


async def replay(
    settings: RuntimeSettings, topic: str, service: str, reason: str, replayed_by: str
) -> int:
    """Send the dead letters of one group back to their source topics; how many went."""
    letters = [d for d in await _letters(settings) if d.topic == topic]
    chosen = await dlq.replay(
        settings.bootstrap_list, letters, reason, service, replayed_by=replayed_by
    )
    return len(chosen)
