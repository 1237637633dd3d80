"""Dead letters for operators: what is in the `.dlq` topics and why, and replaying records back
to their source topic once the cause is fixed (`rapport dlq show|replay`).

A replayed record goes back to its source topic unchanged, with a `rapport-replayed-from`
header. Every consumer of that topic sees it again: those that had taken it ignore it (they
dedupe by event id), and the one that had refused it tries again."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from schemas.topics import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SERVICE,
    DLQ_HEADER_SOURCE_OFFSET,
    DLQ_HEADER_SOURCE_PARTITION,
    DLQ_HEADER_SOURCE_TOPIC,
    DLQ_SUFFIX,
)
from services.runtime.produce import send_and_confirm
from services.runtime.readback import Consumed, read_topics

REPLAYED_FROM_HEADER = "rapport-replayed-from"
# Who sent it back (the workbench's signed-in person, or the operating-system user of `rapport
# dlq replay`): the record itself tells an auditor, wherever it is read.
REPLAYED_BY_HEADER = "rapport-replayed-by"


@dataclass(frozen=True)
class DeadLetter:
    """One record of a `.dlq` topic, with why it is there."""

    topic: str
    partition: int
    offset: int
    service: str
    reason: str
    error: str
    source: str
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, topic: str, record: Consumed) -> DeadLetter:
        def header(name: str) -> str:
            return record.headers.get(name, b"").decode("utf-8", "replace")

        source = header(DLQ_HEADER_SOURCE_TOPIC) or topic.removesuffix(DLQ_SUFFIX)
        where = (
            f"{source}[{header(DLQ_HEADER_SOURCE_PARTITION)}]@{header(DLQ_HEADER_SOURCE_OFFSET)}"
        )
        return cls(
            topic=topic,
            partition=record.partition,
            offset=record.offset,
            service=header(DLQ_HEADER_SERVICE),
            reason=header(DLQ_HEADER_REASON),
            error=header(DLQ_HEADER_ERROR),
            source=where,
            key=record.key,
            value=record.value,
        )

    @property
    def source_topic(self) -> str:
        return self.source.split("[", 1)[0]


async def dead_letters(bootstrap: list[str], topics: list[str]) -> list[DeadLetter]:
    """Every record now in these `.dlq` topics."""
    found = await read_topics(bootstrap, topics)
    return [DeadLetter.of(topic, r) for topic, records in found.items() for r in records]


def summary(letters: list[DeadLetter]) -> Counter[tuple[str, str, str]]:
    """Counts by (dlq topic, service, reason)."""
    return Counter((d.topic, d.service, d.reason) for d in letters)


async def replay(
    bootstrap: list[str],
    letters: list[DeadLetter],
    reason: str | None = None,
    service: str | None = None,
    dry_run: bool = False,
    replayed_by: str = "",
) -> list[DeadLetter]:
    """Send the dead letters that match back to their source topics, each marked with where it
    came from and who sent it; returns those chosen."""
    chosen = [
        d
        for d in letters
        if (reason is None or d.reason == reason) and (service is None or d.service == service)
    ]
    if dry_run or not chosen:
        return chosen
    await send_and_confirm(
        bootstrap,
        [
            (
                d.source_topic,
                d.key,
                d.value,
                [
                    (REPLAYED_FROM_HEADER, f"{d.topic}[{d.partition}]@{d.offset}".encode()),
                    (REPLAYED_BY_HEADER, replayed_by.encode()),
                ],
            )
            for d in chosen
        ],
    )
    return chosen
