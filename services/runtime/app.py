"""The faust app factory and the consuming loop every service agent is built on."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import faust
from aiokafka.errors import KafkaError
from faust.streams import _current_event
from sqlalchemy.exc import OperationalError

from schemas.account_events import AccountEvent
from schemas.envelope import RapportEvent
from schemas.topics import ACCOUNT_EVENTS, TopicSpec
from services.runtime import (
    faust_fetch,
    faust_fixes,
    faust_flow,
    faust_idempotence,
    faust_recovery,
    faust_startup,
    tracing,
)
from services.runtime.codec import (
    Rejection,
    RejectReason,
    decode_account_event,
    decode_rapport_event,
)
from services.runtime.deadletter import DeadLetters
from services.runtime.faust_fixes import HandledOffsets, Turn
from services.runtime.kafka_security import kafka_security
from services.runtime.metrics import (
    EVENT_AGE,
    EVENTS_CONSUMED,
    PROCESSING_DELAY,
    REBALANCES,
    WORKER_PROGRESS,
)
from services.runtime.settings import RuntimeSettings, TableStore
from services.runtime.staging import BATCHING, Staging, produce

log = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")
R = TypeVar("R")

# Records a batching agent takes at most before it settles (services/runtime/staging.py).
BATCH_SIZE = 1000


class BatchAbandoned(Exception):
    """Raised by a `handle_batch` that cannot finish while the group rebalances (it waits for
    records the rebalance has stopped): the batch is dropped unhandled, and its records come
    again from the committed offset, to whichever worker holds their partitions next, which
    passes over what it finds already done, as after a crash."""


def create_app(
    service: str,
    settings: RuntimeSettings,
    store: TableStore = "memory",
    **overrides: Any,
) -> faust.App:
    """A faust app for one service, configured from the shared settings. `store`: where its
    tables live: in memory (rebuilt from their changelogs at every start) or in RocksDB on local
    disk (rocksdict), kept across clean restarts (`services.runtime.worker.keep_local_state`);
    its tables take `options=table_options()`."""
    options: dict[str, Any] = {
        "broker": [f"kafka://{server}" for server in settings.bootstrap_list],
        "store": f"{store}://",
        "datadir": str(settings.datadir(service)),
        "topic_partitions": settings.topic_partitions,
        # No topic_replication_factor: the changelogs are made, replicated as the cluster's
        # environment says, before faust starts (services/runtime/worker.py), never by faust.
        # Records are decoded by our own codec so that undecodable bytes reach the DLQ intact.
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_auto_offset_reset": "earliest",
        # FastAPI serves the APIs; faust's own web server would expose table contents.
        "web_enabled": False,
        # The leader-election topic is unused: per-customer timers run off the stream instead.
        "topic_disable_leader": True,
        "producer_acks": -1,
        "producer_linger": settings.producer_linger_ms / 1000,
        "broker_commit_interval": settings.commit_interval_seconds,
        "broker_session_timeout": settings.consumer_session_timeout_seconds,
        "broker_heartbeat_interval": min(3.0, settings.consumer_session_timeout_seconds / 3),
        "broker_credentials": kafka_security().faust_credentials(),
        # Bounded polls, and a full stream buffer throttling its whole topic.
        **faust_flow.install(),
    }
    options.update(overrides)
    # Consumers that do not hold every partition back for 1.5 s when a few run dry.
    faust_fetch.install()
    # A producer that writes a batch once, even when a leader fails between write and answer.
    faust_idempotence.install()
    # Workers that join their group without a fixed second's wait for their tables.
    faust_startup.install()
    # Tables read back from their changelogs in batches, not a record at a time.
    faust_recovery.install()
    app = faust.App(settings.app_id(service), **options)
    faust_fixes.install(app)
    WORKER_PROGRESS.watch(service, app)

    async def count_rebalance(sender: Any, /, *_: Any, **__: Any) -> None:
        REBALANCES.labels(service).inc()

    app.on_rebalance_complete.connect(count_rebalance)
    return app


# Per partition store: RocksDB's defaults (64 MiB write buffers, three of them, and a 2 GiB
# block cache, each per store) would let a worker of six partitions grow past 4 GiB. These cap
# it at 3 MiB a partition, the rest of the state staying on disk: with 4 MiB buffers and an
# 8 MiB cache, a worker of 100,000 customers grew by 2,761 bytes a customer, with these by 2,183
# (docs/benchmarks.md, 2026-12-07, afternoon). A customer's state is read once per batch it
# is in, mostly from the memtables or the OS page cache: the block cache is not what keeps it fast.
_ROCKSDB_OPTIONS = {
    "write_buffer_size": 1 * 2**20,
    "max_write_buffer_number": 2,
    "block_cache_size": 1 * 2**20,
    "block_cache_compressed_size": 0,
    "driver": "rocksdict",
}


def table_options() -> dict[str, Any]:
    """`app.Table(options=...)` for the stores `create_app(store=...)` may choose (a memory
    store takes none). A dict of its own each time: faust's store takes keys out of it."""
    return dict(_ROCKSDB_OPTIONS)


def raw_topic(app: faust.App, spec: TopicSpec) -> Any:
    """A topic whose records reach the agent as the producer's bytes."""
    return app.topic(
        spec.name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=None,
    )


async def send_all(records: Iterable[tuple[Any, bytes, bytes, int | None]]) -> None:
    """Send (topic, key, value, partition) records in order, then wait until the broker has
    every one: one round trip for a handler's outputs instead of one per output. In a batching
    agent the wait is the batch's (`staging.Staging.settle`)."""
    # Each output continues the trace of the record being handled (W3C traceparent).
    headers = tracing.output_headers()
    staging = BATCHING.get()
    if staging is not None:
        for topic, key, value, partition in records:
            await staging.send(topic, key, value, partition, headers)
        return
    acks = [
        await produce(topic, key, value, partition, headers)
        for topic, key, value, partition in records
    ]
    await asyncio.gather(*acks)


def staging_of(app: faust.App) -> Staging:
    """The app's one `Staging`, shared by its batching agents."""
    staging: Staging | None = getattr(app, "rapport_staging", None)
    if staging is None:
        staging = app.rapport_staging = Staging()  # type: ignore[attr-defined]
    return staging


def consume(
    app: faust.App,
    service: str,
    spec: TopicSpec,
    decode: Callable[[bytes | None, bytes | None], T | Rejection],
    handle: Callable[[T, Any], Awaitable[None]] | None = None,
    *,
    label: Callable[[T], str],
    batched: bool = False,
    batch_within: float = 0.05,
    handle_batch: Callable[[list[tuple[T, Any]]], Awaitable[list[Exception | None]]] | None = None,
    after_batch: Callable[[int], Awaitable[None]] | None = None,
) -> Any:
    """Register an agent that decodes each record of `spec`, dead-letters what is invalid and
    hands valid events to `handle` with their message (for its topic, partition and offset).
    `batched`: up to `BATCH_SIZE` records (or what came within `batch_within` seconds) are
    handled before their outputs are awaited and their table writes made: for handlers whose
    state is in tables made with `staging_of(app).table(...)`. `handle_batch` takes the valid
    events of a batch with their messages at once, and returns, in their order, None for each
    handled and the exception for each its rules failed on (dead-lettered). `after_batch` is
    called with each partition a batch (or, unbatched, an event) had records of, as that
    partition's last record: its table writes go to that partition's changelogs."""
    dead_letters = DeadLetters(app, service)
    consumed = EVENTS_CONSUMED
    handled: HandledOffsets = app.rapport_handled  # type: ignore[attr-defined]
    handled.topics.add(spec.name)

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            await _tables_recovered(app)
            message = event.message
            if await handled.turn(message.tp, message.offset) is not Turn.DUE:
                continue
            with tracing.handling(message) as current:
                await _process(message, current)
            if after_batch is not None:
                await after_batch(message.partition)
            handled.handled(message.tp, message.offset)

    async def batch_agent(stream: Any) -> None:
        # Events in batches: outputs are acknowledged and tables written once per batch
        # (services/runtime/staging.py); offsets are reported handled only after that. A
        # batch settles while the next is taken (see `_settled`).
        staging = staging_of(app)
        BATCHING.set(staging)
        settling: asyncio.Task[None] | None = None
        async for events in stream.take_events(BATCH_SIZE, within=batch_within):
            if settling is not None:
                # At most one batch settles while the next is handled.
                await settling
                settling = None
            await _tables_recovered(app)
            done = []
            taken: list[tuple[T, Any]] = []
            last_of: dict[int, Any] = {}
            for event in events:
                message = event.message
                if await handled.turn(message.tp, message.offset) is not Turn.DUE:
                    continue
                # Table writes take their changelog partition from the current event.
                token = _current_event.set(weakref.ref(event))
                try:
                    with tracing.handling(message) as current:
                        if handle_batch is None:
                            await _process(message, current)
                        elif (result := await _decode(message, current)) is not None:
                            taken.append((result, message))
                finally:
                    _current_event.reset(token)
                handled.admit(message.tp, message.offset)
                done.append(message)
                last_of[message.partition] = event
            if handle_batch is not None and taken:
                try:
                    await _process_batch(handle_batch, taken)
                except BatchAbandoned as abandoned:
                    # faust's rebalance waits for this batch to end: it ends without them.
                    log.warning("batch of %d left for later: %s", len(done), abandoned)
                    await staging.settle()
                    handled.forget({message.tp for message in done})
                    continue
            if after_batch is not None:
                for partition, event in last_of.items():
                    token = _current_event.set(weakref.ref(event))
                    try:
                        await after_batch(partition)
                    finally:
                        _current_event.reset(token)
            # The batch's events stay unacked in faust until settled (a reference each, taken
            # before faust's own ack when the next batch is asked for): a rebalance or a stop
            # waits for them (`Consumer.wait_empty`), as for a batch settled in the loop.
            for event in events:
                event.message.incref()
            settling = asyncio.ensure_future(_settled(staging, events, done))

    async def _settled(staging: Staging, events: Sequence[Any], done: list[Any]) -> None:
        """Settle a batch, then report its records handled and acknowledge them to faust. Run
        as a task while the agent takes its next batch: the broker's acknowledgement of the
        batch's outputs (a round trip, and the broker's own time on this host's shared CPUs)
        is then no longer time the worker takes nothing in."""
        try:
            await staging.settle()
            for message in done:
                handled.handled(message.tp, message.offset)
        except Exception:
            # Raised again where the agent waits for this settle, at its next batch.
            log.exception("settling a batch of %d records failed", len(events))
            raise
        finally:
            # Also when the settle failed: faust must not wait for them forever; unreported
            # as handled, they are not committed and come again.
            for event in events:
                message = event.message
                if event.ack():
                    app.sensors.on_message_out(message.tp, message.offset, message)

    async def _decode(message: Any, current: tracing.Handling) -> T | None:
        result = decode(message.key, message.value)
        if isinstance(result, Rejection):
            await dead_letters.send(message, result)
            return None
        current.event_id = getattr(result, "event_id", None)
        return result

    async def _process(message: Any, current: tracing.Handling) -> None:
        result = await _decode(message, current)
        if result is None:
            return
        try:
            if handle is not None:
                await _with_retries(handle, result, message)
        except Exception as exc:
            await _failed(message, exc)
            return
        _count(result, message)

    async def _process_batch(
        handle_batch: Callable[[list[tuple[T, Any]]], Awaitable[list[Exception | None]]],
        taken: list[tuple[T, Any]],
    ) -> None:
        async def handle_all(items: list[tuple[T, Any]], _: Any) -> list[Exception | None]:
            return await handle_batch(items)

        try:
            failures = await _with_retries(handle_all, taken, taken[-1][1])
        except BatchAbandoned:
            raise
        except Exception:
            # The batch failed as a whole: one at a time, so that only the culprit is lost.
            log.exception("batch of %d failed; handling its events one at a time", len(taken))
            failures = []
            for item in taken:
                try:
                    failures += await _with_retries(handle_all, [item], item[1])
                except BatchAbandoned:
                    raise
                except Exception as exc:
                    failures.append(exc)
        for (result, message), failure in zip(taken, failures, strict=True):
            if failure is None:
                _count(result, message)
            else:
                await _failed(message, failure)

    async def _failed(message: Any, exc: Exception) -> None:
        # A rule that fails on one event must not stop the partition behind it.
        log.error("handler failed on %s@%s", message.topic, message.offset, exc_info=exc)
        await dead_letters.send(
            message,
            Rejection(RejectReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"),
        )

    # The labelled series, looked up once: `labels()` per event had been a fifth of the
    # consume path's own time (docs/benchmarks.md, 2026-12-06).
    consumed_as: dict[str, Any] = {}
    delay = PROCESSING_DELAY.labels(service, spec.name)
    age = EVENT_AGE.labels(service, spec.name)

    def _count(result: T, message: Any) -> None:
        kind = label(result)
        counter = consumed_as.get(kind)
        if counter is None:
            counter = consumed_as[kind] = consumed.labels(service, spec.name, kind)
        counter.inc()
        now = time.time()
        if message.timestamp:
            delay.observe(max(now - message.timestamp, 0.0))
        occurred_at = getattr(result, "occurred_at", None)
        if occurred_at is not None:
            age.observe(max(now - occurred_at.timestamp(), 0.0))

    body = batch_agent if batched or handle_batch is not None else agent
    body.__name__ = f"{service}_{spec.name.replace('.', '_').replace('-', '_')}"
    return app.agent(raw_topic(app, spec), name=f"{service}.{spec.name}")(body)


async def _tables_recovered(app: faust.App) -> None:
    """Hold an event until the worker's tables are recovered. faust 0.15.3 can hand a restarted
    worker input events while it is still reading its changelogs (the input partitions are not
    paused during recovery); applied to half-restored state, they made outputs that an
    uninterrupted worker never made (tests/integration/test_worker_restart.py). Held events are
    applied once recovery is complete: they are still due, and duplicates are ignored by id."""
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # the concrete TableManager has it
    waited = 0
    while recovery.in_recovery or not recovery.completed.is_set():
        # faust offers no event for "recovered again after a rebalance"; poll briefly.
        await asyncio.sleep(0.05)
        waited += 1
        if waited % 200 == 0:
            log.warning(
                "events held for %.0f s while tables recover (in_recovery=%s, completed=%s)",
                waited * 0.05,
                recovery.in_recovery,
                recovery.completed.is_set(),
            )


# Failures of the infrastructure, not of the event: retried until they pass, because a valid event
# must never be dead-lettered for a broker hiccup. The partition waits meanwhile.
# A table's changelog topic can read as having 0 partitions for a moment after the worker
# created it (PartitionsMismatch): the demo's referral worker dead-lettered its first link so.
# SQLAlchemy's OperationalError is a database that is down, locked or unreachable.
_TRANSIENT = (
    KafkaError,
    asyncio.TimeoutError,
    ConnectionError,
    faust.exceptions.PartitionsMismatch,
    OperationalError,
)


async def _with_retries(handle: Callable[[U, Any], Awaitable[R]], event: U, message: Any) -> R:
    attempt = 0
    while True:
        try:
            return await handle(event, message)
        except _TRANSIENT as exc:
            attempt += 1
            log.warning(
                "transient failure on %s@%s (%s); retry %d",
                message.topic,
                message.offset,
                exc,
                attempt,
            )
            # Replaying a handler is safe: outputs carry deterministic ids, state is written last.
            await asyncio.sleep(min(0.5 * 2**attempt, 10.0))


def validating_app(service: str, settings: RuntimeSettings, inputs: list[TopicSpec]) -> faust.App:
    """A worker that validates, counts and dead-letters its inputs and does nothing else yet:
    the stand-in for a service whose rules have not landed."""
    app = create_app(service, settings)
    for spec in inputs:
        if spec is ACCOUNT_EVENTS:
            # mypy cannot solve T through the Annotated union of event models.
            consume(app, service, spec, decode_account_event, label=_event_type)  # type: ignore[misc]
        else:
            consume(app, service, spec, decode_rapport_event, label=_envelope_type)
    return app


def _event_type(event: AccountEvent) -> str:
    return str(event.event_type)


def _envelope_type(event: RapportEvent) -> str:
    return event.type
