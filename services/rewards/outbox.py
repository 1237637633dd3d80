"""The outbox relay: publishes booked ledger entries to `rapport.rewards.ledger.v1`, in booking
order, so that the ledger and the topic never disagree.

Why nothing is lost and nothing is published twice:
- An entry and its outbox row commit in one transaction (`ledger.py`): a rolled-back entry has
  no row, a committed one has. Rows commit in increasing `seq` (handed out inside the
  serialised transaction).
- One relay at a time holds a lease in the database. It sends rows in `seq` order with an
  idempotent producer (the broker drops a retried duplicate and keeps each partition's order),
  waits for every acknowledgement, then marks the rows published.
- A relay that dies after sending and before marking leaves rows that are on the topic but not
  marked. Whoever takes the lease next first finds, in each partition, the last record this
  database's outbox sent (header `rapport-outbox-id`, an id migration 0004 gives each
  database): its `rapport-outbox-seq` header says how far that partition got, and every
  unmarked row up to it (and mapped to it) is marked without being sent again.
A relay paused past its lease while another took over could still send a batch twice; consumers
tell the copies apart by `entry_id` (the event id), which never changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from sqlalchemy import text, update
from sqlmodel import func, select

from services.rewards import ledger, metrics
from services.rewards.ledger import OutboxLeaseRow, OutboxRow
from services.runtime import db
from services.runtime.kafka_security import client_options
from services.runtime.tracing import TRACEPARENT

log = logging.getLogger(__name__)

SEQ_HEADER = "rapport-outbox-seq"
OUTBOX_HEADER = "rapport-outbox-id"
# How far back a relay taking over looks for its own last record in each partition, and how
# many records it reads at a time. Only the last batch before a crash can be sent and unmarked.
_SCAN_BACK = 20_000
_WINDOW = 500


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, begin: int, stop: int) -> list[Any]:
    """The records of one partition with offsets in [begin, stop)."""
    consumer.seek(tp, begin)
    found: list[Any] = []
    for _ in range(120):
        batch = await consumer.getmany(tp, timeout_ms=500)
        found += [r for r in batch.get(tp, []) if begin <= r.offset < stop]
        if await consumer.position(tp) >= stop:
            return found
    raise TimeoutError(f"could not read {tp} from {begin} to {stop}")


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a key (murmur2, as in Java)."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class OutboxRelay:
    """Publishes the outbox while this process holds the relay lease."""

    def __init__(
        self,
        database_url: str,
        bootstrap: list[str],
        topic: str,
        lease_seconds: float,
        batch: int,
    ) -> None:
        self.url = database_url
        self.bootstrap = bootstrap
        self.topic = topic
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.producer: AIOKafkaProducer | None = None
        self.partitions = 0
        self.identity = ""
        # Reconciled with the topic since the lease was last taken.
        self.reconciled = False
        self.renew_at = 0.0

    async def run_once(self) -> int:
        """Publish what waits, if this process holds (or can take) the lease; returns how many
        entries went out. A failure is logged and retried on the next call, after reconciling
        again."""
        try:
            return await self._run_once()
        except Exception:
            self.reconciled = False
            self.renew_at = 0.0
            log.exception("outbox relay failed; retrying")
            return 0

    async def _run_once(self) -> int:
        now = time.monotonic()
        if now >= self.renew_at:
            held = await asyncio.to_thread(
                take_lease, self.url, self.holder, ledger.utcnow(), self.lease_seconds
            )
            if not held:
                self.reconciled = False
                return 0
            # Renewed well before it lapses: a write per third of the lease, not per poll.
            self.renew_at = now + self.lease_seconds / 3
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                **client_options(),
            )
            await producer.start()
            self.producer = producer
            self.partitions = len(await producer.partitions_for(self.topic))
            self.identity = await asyncio.to_thread(outbox_identity, self.url)
        if not self.reconciled:
            await self._reconcile()
            self.reconciled = True
        rows = await asyncio.to_thread(unpublished, self.url, self.batch)
        if not rows:
            metrics.OUTBOX_BACKLOG.set(0)
            return 0
        acks = [
            await self.producer.send(
                self.topic,
                row.payload,
                key=row.key.encode(),
                partition=partition_of(row.key, self.partitions),
                headers=[
                    (SEQ_HEADER, str(row.seq).encode()),
                    (OUTBOX_HEADER, self.identity.encode()),
                    *([(TRACEPARENT, row.traceparent.encode())] if row.traceparent else []),
                ],
            )
            for row in rows
        ]
        await asyncio.gather(*acks)
        await asyncio.to_thread(
            mark_published, self.url, [r.seq for r in rows if r.seq], ledger.utcnow()
        )
        metrics.OUTBOX_PUBLISHED.inc(len(rows))
        if len(rows) == self.batch:
            metrics.OUTBOX_BACKLOG.set(await asyncio.to_thread(outbox_backlog, self.url))
        else:
            metrics.OUTBOX_BACKLOG.set(0)
        return len(rows)

    async def _reconcile(self) -> None:
        tails = await self._tail_seqs()
        if not tails:
            return
        rows = await asyncio.to_thread(unpublished, self.url, 1_000_000, max(tails.values()))
        sent = [
            r.seq
            for r in rows
            if r.seq is not None and r.seq <= tails.get(partition_of(r.key, self.partitions), -1)
        ]
        if sent:
            log.info("outbox: %d entries were on the topic but not marked; marked now", len(sent))
            await asyncio.to_thread(mark_published, self.url, sent, ledger.utcnow())
            metrics.RELAY_RECONCILED.inc(len(sent))

    async def _tail_seqs(self) -> dict[int, int]:
        """For each partition of the topic, the outbox seq of the last record this database's
        outbox put there (another stack's outbox may share the topic: its records are passed
        over, up to `_SCAN_BACK` records back)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **client_options()
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(partitions)
            starts = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
            tails: dict[int, int] = {}
            for tp in partitions:
                stop = ends[tp]
                floor = max(starts[tp], ends[tp] - _SCAN_BACK)
                while stop > floor and tp.partition not in tails:
                    begin = max(stop - _WINDOW, floor)
                    for record in reversed(await _read(consumer, tp, begin, stop)):
                        headers = dict(record.headers)
                        if headers.get(OUTBOX_HEADER) == self.identity.encode():
                            tails[tp.partition] = int(headers[SEQ_HEADER])
                            break
                    stop = begin
            return tails
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        """Close the producer."""
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None


# -- the outbox's rows -------------------------------------------------------------------------


def take_lease(url: str, holder: str, now: datetime, seconds: float) -> bool:
    """Take or renew the relay lease; False while another live holder has it."""
    expires_at = now + timedelta(seconds=seconds)
    with db.serialised_session(url, ledger.LOCK) as session:
        lease = session.get(OutboxLeaseRow, "relay")
        if lease is None:
            session.add(OutboxLeaseRow(name="relay", holder=holder, expires_at=expires_at))
        elif lease.holder != holder and db.as_utc(lease.expires_at) > now:
            return False
        else:
            lease.holder, lease.expires_at = holder, expires_at
        return True


def outbox_identity(url: str) -> str:
    """The id this database's outbox tags its records with (set by migration 0004)."""
    with db.session_scope(url) as session:
        found = session.execute(
            text("SELECT value FROM rapport_installation WHERE key = 'rewards_outbox_id'")
        ).scalar_one()
        return str(found)


def unpublished(url: str, limit: int, through: int | None = None) -> list[OutboxRow]:
    """The oldest outbox rows not yet published (with seq at most `through`, if given)."""
    with db.session_scope(url) as session:
        query = select(OutboxRow).where(OutboxRow.published_at.is_(None))  # type: ignore[union-attr]
        if through is not None:
            query = query.where(OutboxRow.seq <= through)  # type: ignore[operator]
        rows = session.exec(query.order_by(OutboxRow.seq).limit(limit)).all()  # type: ignore[arg-type]
        for row in rows:
            session.expunge(row)
        return list(rows)


def mark_published(url: str, seqs: list[int], now: datetime) -> None:
    """Record that these outbox rows are on the topic."""
    if not seqs:
        return
    with db.session_scope(url) as session:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.seq.in_(seqs))  # type: ignore[union-attr]
            .values(published_at=now)
        )


def outbox_backlog(url: str) -> int:
    """How many entries wait for the relay."""
    with db.session_scope(url) as session:
        return int(
            session.exec(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))  # type: ignore[union-attr]
            ).one()
        )
