"""`rapport produce FILE`: load JSON-lines events into the input topic, as a core bank would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.topics import ACCOUNT_EVENTS
from services.runtime.kafka_security import client_options
from services.runtime.settings import RuntimeSettings


@dataclass(frozen=True)
class Record:
    """One record to send: the key is the customer id when the line names one."""

    key: bytes | None
    value: bytes
    # The event's date, when the line has one: progress shows how far the feed has got.
    day: str | None = None


def records_from_lines(lines: Iterable[bytes]) -> Iterator[Record]:
    """Each non-blank line becomes a record; lines that are not JSON objects are sent as they
    are (with no key), so the services' dead-letter handling can be exercised from a file."""
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        key = day = None
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            if isinstance(data.get("customer_id"), str):
                key = data["customer_id"].encode("utf-8")
            if isinstance(data.get("occurred_at"), str):
                day = data["occurred_at"][:10]
        yield Record(key, line, day)


def make_producer(settings: RuntimeSettings) -> AIOKafkaProducer:
    """A producer tuned for bulk loading: idempotent and batched."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_list,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
        **client_options(),
    )


OneOff = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


async def send_and_confirm(bootstrap: list[str], records: Iterable[OneOff]) -> None:
    """Send (topic, key, value, headers) records in order with an idempotent producer and return
    once the broker has every one: for the few records an API call or an operator's command
    publishes, outside any worker."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **client_options()
    )
    await producer.start()
    try:
        acks = [
            await producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def produce_records(
    settings: RuntimeSettings,
    records: Iterable[Record],
    *,
    topic: str = ACCOUNT_EVENTS.name,
    rate: float | None = None,
    total: int | None = None,
    show_progress: bool = True,
) -> int:
    """Send records (at `rate` per second, or as fast as the broker takes them)."""
    producer = make_producer(settings)
    await producer.start()
    sent = 0
    started = time.monotonic()
    pending: list[asyncio.Future[object]] = []
    progress = Progress(
        TextColumn("producing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} events/s"),
        TextColumn("{task.fields[day]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
    )
    try:
        with progress:
            task = progress.add_task("produce", total=total, rate=0.0, day="")
            day = ""
            for record in records:
                pending.append(await producer.send(topic, record.value, key=record.key))
                sent += 1
                day = record.day or day
                if rate:
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
                if sent % 500 == 0:
                    elapsed = max(time.monotonic() - started, 1e-9)
                    progress.update(task, completed=sent, rate=sent / elapsed, day=day)
            await asyncio.gather(*pending)
            elapsed = max(time.monotonic() - started, 1e-9)
            progress.update(task, completed=sent, rate=sent / elapsed, day=day)
    finally:
        await producer.stop()
    return sent


def produce_file(
    settings: RuntimeSettings, path: Path, rate: float | None = None, show_progress: bool = True
) -> int:
    """Send every line of a JSON-lines file to the input topic; returns how many were sent."""
    with path.open("rb") as handle:
        total = sum(1 for line in handle if line.strip())
    with path.open("rb") as handle:
        return asyncio.run(
            produce_records(
                settings,
                records_from_lines(handle),
                rate=rate,
                total=total,
                show_progress=show_progress,
            )
        )
