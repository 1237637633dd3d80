"""Workaround for faust-streaming 0.15.3's table recovery, which reads a table's changelog back
through the worker's own consumer one record at a time (`faust/tables/recovery.py`,
`Recovery._slurp_changelogs`, inherited from robinhood/faust; no upstream issue found). Remove
this when a release reads changelogs in batches.

What faust does for each record: the consumer's drain loop hands it on in a task of its own,
raced against three more (`Consumer._drain_messages`, `Service.wait_first`); the conductor
decodes it into an event and queues it (`Conductor.on_message`), and, the queue being full
while the recovery reads it, waits in yet another task; the recovery loop takes it in a fourth
(`asyncio.wait_for(queue.get(), timeout=5.0)`), formats two debug lines whether or not they are
logged, and builds a `Counter` of every partition's remaining records to know whether it is
done.

Where it bit. A lifecycle worker of 100,000 customers rebuilding its states from the changelog
(a memory store, or a RocksDB store removed after a crash) took 203.5 s to take input again,
about 6,000 records a second (docs/benchmarks.md, 2026-12-07, night), against issue 23's 30 s.
Profiled, the records' journey through those tasks was nearly all of it.

The workaround: when faust has found where each active changelog partition is to be read from
(`Recovery._seek_offsets` for the actives), a consumer of our own with no group reads each to
its end in batches, as a bare consumer does, and applies them to the table as faust would
(`Table.apply_changelog_batch`, which both stores take: the memory store decoded keys and
values, RocksDB the bytes), moving faust's offsets along. faust then finds nothing left to
read and goes on as after any recovery. Standby partitions are left to faust. A rebalance or a
stop meanwhile ends the read where it is; a read that fails or stalls leaves the rest to faust's
own reader, from where it got.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.serializers.codecs import get_codec
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.recovery import Recovery

from services.runtime.kafka_security import client_options

log = logging.getLogger(__name__)

# A read that brings nothing for this long (a broker gone meanwhile) is left to faust's reader.
STALL_SECONDS = 30.0
# Records applied to a table at a time: about what one fetch brings for six partitions.
MAX_RECORDS = 10_000

_faust_seek_offsets = Recovery._seek_offsets


class _Message:
    """What faust's stores and tables read of a changelog record's message."""

    __slots__ = ("headers", "key", "offset", "partition", "topic", "tp", "value")

    def __init__(self, tp: Any, record: Any) -> None:
        self.tp = tp
        self.topic = tp.topic
        self.partition = tp.partition
        self.offset = record.offset
        self.key = record.key
        self.value = record.value
        self.headers = record.headers


class _Event:
    """A changelog record as faust's recovery hands it to `Table.apply_changelog_batch`: the key
    and value decoded by the changelog topic's schema (for a store that reads them), and the
    message with their bytes."""

    __slots__ = ("key", "message", "value")

    def __init__(self, key: Any, value: Any, message: _Message) -> None:
        self.key = key
        self.value = value
        self.message = message


async def _seek_offsets(self: Any, consumer: Any, tps: set[Any], offsets: Any, title: str) -> None:
    if title == "active" and tps:
        await read_changelogs(self, tps, offsets)
    await _faust_seek_offsets(self, consumer, tps, offsets, title)


async def read_changelogs(recovery: Any, tps: Iterable[Any], offsets: Any) -> int:
    """Read the active changelog partitions `tps` from past `offsets` (faust's: the last offset
    applied, -1 for none) to their highwaters into their tables, moving `offsets` along; the
    records applied."""
    highwaters = recovery.active_highwaters
    todo = {
        tp: offsets[tp]
        for tp in tps
        if highwaters.get(tp) is not None and offsets[tp] < highwaters[tp]
    }
    if not todo:
        return 0
    app = recovery.app
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=[f"{url.host}:{url.port or 9092}" for url in app.conf.broker_consumer],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_options(),
    )
    held = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
    decoders: dict[Any, tuple[Decode, Decode] | None] = {}
    applied = 0
    try:
        await consumer.start()
        consumer.assign(list(held))
        for partition, tp in held.items():
            consumer.seek(partition, todo[tp] + 1)
        progress = time.monotonic()
        while todo and not _interrupted(recovery):
            fetched = await consumer.getmany(
                *(p for p, tp in held.items() if tp in todo),
                timeout_ms=1000,
                max_records=MAX_RECORDS,
            )
            if fetched:
                progress = time.monotonic()
            elif time.monotonic() - progress > STALL_SECONDS:
                log.warning(
                    "changelog read back stalled for %.0f s; faust reads the rest", STALL_SECONDS
                )
                break
            for partition, records in fetched.items():
                # Checked after every wait: a rebalance meanwhile has dropped the revoked
                # partitions' offsets, which a write here would bring back, stale.
                if _interrupted(recovery):
                    break
                tp = held[partition]
                table = recovery.tp_to_table[tp]
                if table not in decoders:
                    decoders[table] = _decoders(app, table)
                applied += await _apply(table, decoders[table], tp, records)
                offsets[tp] = records[-1].offset
            for partition, tp in held.items():
                # Done at the highwater, or past it where its last records were not data (the
                # markers of transactions).
                if tp in todo and (
                    offsets[tp] >= highwaters[tp]
                    or await consumer.position(partition) > highwaters[tp]
                ):
                    if _interrupted(recovery):
                        break
                    offsets[tp] = max(offsets[tp], highwaters[tp])
                    del todo[tp]
        if todo and _interrupted(recovery):
            log.info("changelog read back ended by a rebalance or a stop")
    except Exception as exc:
        log.warning("changelog read back failed (%r); faust reads the rest", exc)
    finally:
        await consumer.stop()
    log.info(
        "changelog read back: %d records of %d partitions in %.1f s",
        applied,
        len(held),
        time.monotonic() - started,
    )
    return applied


Decode = Callable[[bytes | None], Any]


def _interrupted(recovery: Any) -> bool:
    """A rebalance has started another recovery, or the worker stops."""
    return bool(recovery.should_stop or recovery.signal_recovery_start.is_set())


def _decoders(app: Any, table: Any) -> tuple[Decode, Decode] | None:
    """The changelog topic's key and value decoders, as faust's schema applies them, looked up
    once (faust looks the codec up again for every record); None for a RocksDB store, which
    takes the records' bytes as they are (`rocksdb.Store.apply_changelog_batch`)."""
    if isinstance(table.data, RocksDBStore):
        return None
    schema = table.changelog_topic.schema
    registry = app.serializers

    def decoder(typ: Any, serializer: Any) -> Decode:
        codec = get_codec(serializer)
        prepare = registry._prepare_payload

        def decode(raw: bytes | None) -> Any:
            return None if raw is None else prepare(typ, codec.loads(raw))

        return decode

    return (
        decoder(schema.key_type, schema.key_serializer or registry.key_serializer),
        decoder(schema.value_type, schema.value_serializer or registry.value_serializer),
    )


async def _apply(
    table: Any, decoders: tuple[Decode, Decode] | None, tp: Any, records: list[Any]
) -> int:
    events = []
    for record in records:
        message = _Message(tp, record)
        if decoders is None:
            events.append(_Event(None, None, message))
        else:
            events.append(_Event(decoders[0](record.key), decoders[1](record.value), message))
    table.apply_changelog_batch(events)
    if table._on_changelog_event is not None:
        for event in events:
            await table.on_changelog_event(event)
    return len(events)


def install() -> None:
    """Patch faust's recovery to read the active changelogs in batches first."""
    Recovery._seek_offsets = _seek_offsets  # type: ignore[method-assign]
