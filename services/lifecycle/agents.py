"""Faust adapter of the lifecycle service: the partition store as a changelogged table, outputs
to the stage and churn topics, the read model written in batches beside the stream, and the
history of stages and signals projected from those outputs."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import chain, islice
from typing import Any

import faust
from pydantic import TypeAdapter

from schemas.account_events import AccountEvent
from schemas.lifecycle import (
    ChurnSignalChanged,
    CustomerBirthday,
    StageChanged,
    TenureAnniversary,
)
from schemas.topics import ACCOUNT_EVENTS, CHURN_SIGNALS, MILESTONES, STAGE_CHANGED, TopicSpec
from services.lifecycle import history, metrics, read_model
from services.lifecycle.config import LifecycleSettings
from services.lifecycle.domain import Output
from services.lifecycle.service import LifecycleService, decode_state
from services.runtime.app import (
    consume,
    create_app,
    raw_topic,
    send_all,
    staging_of,
    table_options,
)
from services.runtime.codec import decode_account_event, encode, model_decoder
from services.runtime.idle import IdlePartitions, watch_idle
from services.runtime.settings import RuntimeSettings

SERVICE = "lifecycle"
log = logging.getLogger(__name__)

_READ_MODEL_BATCH = 2000


class Lifecycle:
    """The table and topics of one lifecycle worker, and the handler the runtime calls."""

    def __init__(self, app: faust.App, config: LifecycleSettings, database_url: str) -> None:
        # Keys as JSON strings, values as our own JSON bytes. The types, not a schema, set the
        # serializers faust uses when it recovers the table from its changelog.
        self.staging = staging_of(app)
        self.table = self.staging.table(
            app.Table(
                "lifecycle-state",
                default=None,
                key_type=str,
                value_type=bytes,
                options=table_options(),
            ),
            # Every key once per batch, at its last write (services/lifecycle/service.py says
            # why that is safe): a customer is written once however often it changed.
            latest_only=lambda key: True,
        )
        self.stage_topic = raw_topic(app, STAGE_CHANGED)
        self.signal_topic = raw_topic(app, CHURN_SIGNALS)
        self.milestone_topic = raw_topic(app, MILESTONES)
        self.service = LifecycleService(
            self.table,
            self._publish,
            config.rules(),
            timedelta(hours=config.allowed_lateness_hours),
            config.pseudonym_key.encode(),
        )
        self.database_url = database_url
        self.store_kind = config.store
        self.read_model_share = config.read_model_share
        self.read_model_due = 0.0
        # Customers a rebalance queued for the read model, written a batch at a time.
        self.read_model_backlog: Iterator[str] = iter(())

    async def _publish(self, outputs: list[Output]) -> None:
        await send_all(
            (
                self._topic_of(output),
                output.customer_id.encode(),
                encode(output),
                None,
            )
            for output in outputs
        )
        for output in outputs:
            metrics.record(output)

    def _topic_of(self, output: Output) -> Any:
        if isinstance(output, StageChanged):
            return self.stage_topic
        if isinstance(output, TenureAnniversary | CustomerBirthday):
            return self.milestone_topic
        return self.signal_topic

    async def handle(self, event: AccountEvent, message: Any) -> None:
        processed = await self.service.handle(event, message.partition, message.offset)
        if processed.duplicate:
            metrics.DUPLICATES.inc()
        if processed.late:
            metrics.LATE_EVENTS.inc()
        metrics.EVENT_TIME_LAG.observe(processed.lag_seconds)

    async def follow_idle(self, idle: IdlePartitions, found: list[int]) -> None:
        """The clocks of this worker's idle partitions follow those of its other partitions:
        the lowest clock among the partitions that are not idle, or the highest of all when
        every one is (docs/lifecycle.md, "Time")."""
        quiet = idle.partitions()
        if not quiet:
            return
        clocks = {p: self.service.clock(p) for p in idle.assigned()}
        busy = [clock for p, clock in clocks.items() if p not in quiet]
        target: datetime | None
        if busy:
            # A busy partition without a clock yet (its first records under way) holds back.
            target = None if None in busy else min(c for c in busy if c is not None)
        else:
            target = max((c for c in clocks.values() if c is not None), default=None)
        if target is None:
            return
        followed = False
        for partition in sorted(quiet):
            clock = clocks.get(partition)
            if clock is None or clock.toordinal() >= target.toordinal():
                continue
            # Written as by an event of the partition (its changelog partition), and settled
            # as a batch: its outputs acknowledged before the states, the clock last.
            with self.staging.as_partition(ACCOUNT_EVENTS.name, partition):
                still_idle = functools.partial(idle.is_idle, partition)
                if await self.service.follow(partition, target, still_idle):
                    followed = True
                    log.info("idle partition %d follows the clock to %s", partition, target)
        if followed:
            await self.staging.settle()

    def resync(self) -> None:
        """After a rebalance: the calendar built again from the partitions now held, and every
        customer queued for the read model (it may miss changes made before a crash), behind
        the customers that change from now on. A RocksDB store's customers are read from it a
        batch at a time, as they are written: listed at once, 100,000 customers' keys held a
        restarted worker's first event for about a second. A memory store's are listed at once
        (quickly)."""
        self.service.forget_calendar()
        self.read_model_backlog = self.service.customer_ids(live=self.store_kind == "rocksdb")

    async def write_read_model(self) -> None:
        """Write the customers changed since the last call, in batches, in a thread; after a
        write that took t seconds, the next waits until t / read_model_share have passed."""
        started = time.monotonic()
        if started < self.read_model_due:
            return
        try:
            await self._write_changed()
        finally:
            spent = time.monotonic() - started
            self.read_model_due = started + spent / self.read_model_share

    async def _write_changed(self) -> None:
        """Every customer changed since the last call, then one batch of the backlog a
        rebalance left. A worker that takes over 100,000 customers writes them over the next
        minute or so, its event loop free for the events meanwhile: written all at once, they
        held a restarted worker's first event for 23 s (docs/benchmarks.md, 2026-12-06). A
        customer who changed meanwhile may be written again when the backlog reaches him."""
        changed = self.service.changed
        while changed:
            batch = list(islice(changed, _READ_MODEL_BATCH))
            changed.difference_update(batch)
            if not await self._write(batch):
                changed.update(batch)
                return
        try:
            batch = list(islice(self.read_model_backlog, _READ_MODEL_BATCH))
        except RuntimeError as exc:
            # A rebalance changed the store's partitions under the iterator; its resync
            # queues the customers now held.
            log.info("read model catch-up ended by a rebalance (%s)", exc)
            self.read_model_backlog = iter(())
            return
        if batch and not await self._write(batch):
            self.read_model_backlog = chain(batch, self.read_model_backlog)

    async def _write(self, batch: list[str]) -> bool:
        """These customers' rows to the read model; False when the database refused them (they
        are taken again next time: the read model lags, the stream does not stop)."""
        # The states' bytes are read here, where the store lives; they are decoded and made
        # rows in the thread that writes them. On the event loop that took about 56 µs a
        # customer (a year-old state): a second's thousand changed customers held the events
        # behind them for 56 ms (docs/benchmarks.md, 2026-12-07, afternoon).
        stored = [raw for raw in map(self.service.store.get, batch) if raw is not None]
        try:
            written = await asyncio.to_thread(_write_rows, self.database_url, stored)
        except Exception as exc:
            metrics.READ_MODEL_FAILURES.inc()
            log.warning("read model write failed (%s); will retry", exc)
            return False
        metrics.READ_MODEL_ROWS.inc(written)
        return True

    async def record_history(self, taken: list[tuple[Any, Any]]) -> list[Exception | None]:
        """The worker's own stage changes and churn signals, into the history table before
        their offsets are committed (a database outage holds these topics, not the input)."""
        rows = [history.history_row(event) for event, _ in taken]
        await asyncio.to_thread(history.write, self.database_url, rows)
        return [None] * len(taken)


def _write_rows(database_url: str, stored: list[bytes]) -> int:
    """The read model's rows of these stored states, written; how many."""
    rows = [read_model.profile_row(decode_state(raw)) for raw in stored]
    read_model.write(database_url, rows)
    return len(rows)


def build_app(settings: RuntimeSettings) -> faust.App:
    """The lifecycle worker's faust app."""
    config = LifecycleSettings()
    app = create_app(SERVICE, settings, store=config.store)
    lifecycle = Lifecycle(app, config, settings.resolved_database_url)
    # mypy cannot solve T through the Annotated union of event models.
    consume(  # type: ignore[misc]
        app,
        SERVICE,
        ACCOUNT_EVENTS,
        decode_account_event,
        lifecycle.handle,
        label=lambda e: str(e.event_type),
        batched=True,
        batch_within=0.01,
    )

    outputs: list[tuple[TopicSpec, TypeAdapter[Any]]] = [
        (STAGE_CHANGED, TypeAdapter(StageChanged)),
        (CHURN_SIGNALS, TypeAdapter(ChurnSignalChanged)),
    ]
    for spec, adapter in outputs:
        consume(
            app,
            SERVICE,
            spec,
            model_decoder(adapter),
            handle_batch=lifecycle.record_history,
            label=lambda e: str(e.type),
        )

    async def resync(sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        lifecycle.resync()

    app.on_rebalance_complete.connect(resync)
    watch_idle(app, ACCOUNT_EVENTS.name, settings.idle_partition_seconds, lifecycle.follow_idle)
    app.timer(interval=config.read_model_interval_seconds)(lifecycle.write_read_model)
    return app
