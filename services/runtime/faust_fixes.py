"""Workarounds for faust-streaming 0.15.3 defects seen on a restarted worker, installed when an
app is created. Each names what was seen; remove it when a release fixes that.

Records out of turn. After a restart, faust hands the agent records that are not the next one
of their partition: again after a seek back (duplicates), or from past the committed offset
(records skipped, until the next restart). Both were seen in
tests/integration/test_worker_restart.py. `HandledOffsets.turn` therefore takes the committed
offset from the broker when a partition is first seen and admits only the next record of each
partition: one already handled is passed over, and on one from past a hole the consumer is
seeked back to the record that is due.

Why they come out of turn: faust drops a fetched record whose offset is below the partition's
"read offset", which it raises to each record it hands on. After a seek back (its own, to the
committed offset once tables are recovered, or ours), records fetched before the seek still
arrive, raise the read offset past the seek point, and the records fetched again from there are
then dropped as already read: the partition skips them. faust's dropping is therefore turned off
(`_NoReadOffsets`), and `HandledOffsets.turn` alone decides which records are handled.

Commits. faust derives the offset to commit from the list of acked offsets, and after a restart
that list gets duplicates (robinhood/faust#625: the committed offset then creeps one record per
commit interval) or a hole at its head (the committed offset then never moves). The offset to
commit is instead one past the last record handled in turn, committed through faust's own path,
which flushes the producer (outputs and changelogs) first. An input topic with holes in its
offsets (transaction markers, compaction) would stall at the first hole: Rapport's input topics
have none.

Partitions whose last records were dropped. faust drops records it has already fetched around a
rebalance (queues cleared on revocation and on resume, records of a stale generation or of a
stopped flow), and only a seek puts them back. Its seek after a rebalance
(`Consumer.perform_seek`, aiokafka's `seek_to_committed`) skips partitions with no committed
offset, and records fetched after that seek but before the flow resumes are dropped too (seen in
CI: "record 839 arrived while 786 is due" just after "Worker ready"). A hole is seen by `turn`
only when a later record of the partition arrives: when the dropped records are the partition's
last (aiokafka fetches up to 1 MiB of a partition at once, a whole test partition), nothing
arrives, and the worker holds the partition without taking it while its other topics go on.
`HandledOffsets.check_stalled`, run every few seconds, seeks back a partition that has records
past the one due but has given none for a while, whether or not a later one ever comes. A
partition faust holds back while its agent's buffer is full is left alone; one only slowed
down otherwise is sought back needlessly: its records then come twice, and the second copies
are passed over.

Seeks run on the consumer's thread. faust's `Consumer.seek` calls aiokafka from the event
loop's thread while the aiokafka consumer runs on faust's consumer thread: it deleted fetched
records under aiokafka's `fetched_records` (KeyError, the fetcher and the worker crashed in CI)
and could be lost under a fetch that completed at the same time.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka.errors import KafkaError
from faust.exceptions import NotReady
from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

# How long a seek back is given to take effect before it is asked for again.
_RESEEK_AFTER_SECONDS = 5.0
# How long a partition with records past the one due may give none before it is sought back.
_STALLED_AFTER_SECONDS = 30.0
# How often the partitions are checked for that.
_CHECK_EVERY_SECONDS = 1.0


class Turn(enum.Enum):
    DUE = "due"  # the next record of its partition: handle it
    HANDLED = "handled"  # handled before (a redelivery): pass over it
    AHEAD = "ahead"  # past the record that is due: pass over it, it comes again in turn


class HandledOffsets:
    """Per partition, the offset of the next record to handle."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.next: dict[Any, int] = {}
        self.done: dict[Any, int] = {}  # per partition, one past the last record settled
        self.topics: set[str] = set()  # the topics whose records go through `turn`
        self._seeks: dict[Any, tuple[int, float]] = {}
        self._arrived: dict[Any, float] = {}  # when a record of the partition last came
        self._came: dict[Any, float] = {}  # the same, for records only (not seeks)
        self._waiting: list[asyncio.Future[None]] = []  # `progress` calls, woken by `handled`

    async def turn(self, tp: Any, offset: int) -> Turn:
        self._arrived[tp] = self._came[tp] = time.monotonic()
        expected = self.next.get(tp)
        if expected is None:
            expected = self.next[tp] = await self.start_of(tp)
        if offset == expected:
            if self._seeks.pop(tp, None) is not None:
                log.warning("%s: back in turn at %d", tp, offset)
            return Turn.DUE
        if offset < expected:
            return Turn.HANDLED
        await self._seek_back(tp, expected, offset)
        return Turn.AHEAD

    def admit(self, tp: Any, offset: int) -> None:
        """The agent has taken the due record into a batch not yet settled: the next one is
        due, but the offset to commit stays where it is."""
        self.next[tp] = offset + 1

    def handled(self, tp: Any, offset: int) -> None:
        """The agent is done with the due record (processed or dead-lettered)."""
        self.next[tp] = max(self.next.get(tp, 0), offset + 1)
        self.done[tp] = offset + 1
        self.wake()

    def wake(self) -> None:
        """Progress: every `progress` call under way returns."""
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        self._waiting.clear()

    async def progress(self, most: float) -> None:
        """Until the next record is reported handled (or `wake` is called), or `most` seconds:
        a wait on this worker's own progress (notify's, for profile facts) wakes at once
        instead of polling. Each call waits on a future of its own, so that concurrent waits
        never miss a wake."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await asyncio.wait_for(waiter, most)
        except TimeoutError:
            pass
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    def arrived(self, tp: Any) -> float | None:
        """When (monotonic) a record of the partition last came to the agent; None if none
        came since the partition was assigned (services/runtime/idle.py)."""
        return self._came.get(tp)

    def forget(self, tps: Iterable[Any]) -> None:
        """Partitions revoked: their next assignment starts from the committed offset."""
        for tp in tps:
            self.next.pop(tp, None)
            self.done.pop(tp, None)
            self._seeks.pop(tp, None)
            self._arrived.pop(tp, None)
            self._came.pop(tp, None)

    async def check_stalled(self) -> None:
        """Seek back each held partition that has records past the one due but gave none for
        `_STALLED_AFTER_SECONDS`: the due records were dropped and no later record came to show
        the hole (see the module's docstring)."""
        app = self.app
        recovery = app.tables.recovery
        if (
            app.rebalancing
            or not app.flow_control.is_active()
            or recovery.in_recovery
            or not recovery.completed.is_set()
        ):
            return
        now = time.monotonic()
        consumer = app.consumer
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        except (KafkaError, NotReady):
            return  # the consumer is not running (starting, or stopping)
        held_back: set[Any] = getattr(consumer, "_buffered_partitions", set())
        for tp in assigned:
            if tp in held_back:
                # faust holds it back for its agent's full buffer (services/runtime/faust_flow.py):
                # nothing was dropped, and its quiet time starts once it is fetched again.
                self._arrived[tp] = now
                continue
            # First looked at since it was assigned, and no record yet: records faust fetched
            # around the rebalance may have been dropped (its seek comes before the flow
            # resumes), so it is sought back at once rather than after the quiet time. A
            # restarted worker had waited 30 s for the one new record dropped so.
            fresh = tp not in self._arrived and tp not in self._came
            last = self._arrived.setdefault(tp, now)
            if not fresh and now - last < _STALLED_AFTER_SECONDS:
                continue
            try:
                end = consumer.highwater(tp)
            except (AssertionError, KafkaError, NotReady):  # revoked meanwhile, or restarting
                continue
            if end is None:
                if fresh:
                    del self._arrived[tp]  # judged once it has been fetched
                continue  # not fetched yet
            due = self.next.get(tp)
            if due is None:
                start = await self.start_of(tp)
                # `turn` may have started the partition while the committed offset was read.
                # Not stored: a partition nothing was taken of stands at its committed offset,
                # and the idle check (services/runtime/idle.py) reads it so.
                due = self.next.get(tp, start)
            if due >= end:
                continue
            self._arrived[tp] = now
            log.warning(
                "%s: record %d is due and none came %s (end %d); seeking back",
                tp,
                due,
                "since it was assigned" if fresh else f"for {now - last:.0f} s",
                end,
            )
            await self._seek(tp, due)

    async def start_of(self, tp: Any) -> int:
        """The committed offset, or the partition's first offset if none was committed (the
        apps read from the earliest record)."""
        thread = self.app.consumer._thread
        client = thread._ensure_consumer()
        committed: int | None = await thread.call_thread(client.committed, tp)
        if committed is not None:
            return committed
        earliest = await thread.call_thread(client.beginning_offsets, [tp])
        return int(earliest[tp])

    async def _seek_back(self, tp: Any, expected: int, seen: int) -> None:
        now = time.monotonic()
        last = self._seeks.get(tp)
        if last is not None and last[0] == expected and now - last[1] < _RESEEK_AFTER_SECONDS:
            return
        self._seeks[tp] = (expected, now)
        log.warning("%s: record %d arrived while %d is due; seeking back", tp, seen, expected)
        await self._seek(tp, expected)

    async def _seek(self, tp: Any, offset: int) -> None:
        """Seek on the consumer's thread, where aiokafka runs (see the module's docstring)."""
        thread = self.app.consumer._thread
        try:
            await thread.call_thread(thread._ensure_consumer().seek, tp, offset)
        except Exception:
            # A rebalance took the partition away meanwhile; its next owner starts from the
            # committed offset, which is never past `expected`.
            log.warning("seek of %s to %d failed", tp, offset, exc_info=True)


class _NoReadOffsets(dict[Any, int | None]):
    """A read-offset map that never remembers: faust's drain loop then drops no record."""

    def __getitem__(self, tp: Any) -> int | None:
        return None

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        pass

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


def _consumer_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _faust_consumer_init(self, *args, **kwargs)
    self._read_offset = _NoReadOffsets()


def _new_offset(self: Any, tp: Any) -> int | None:
    handled: HandledOffsets | None = getattr(self.app, "rapport_handled", None)
    if handled is None:
        result: int | None = _faust_new_offset(self, tp)
        return result
    # faust's own bookkeeping is not used for these partitions: keep it from growing.
    self._acked[tp].clear()
    self._acked_index[tp].clear()
    offset = handled.done.get(tp)
    committed = self._committed_offset[tp]
    if offset is None or (committed is not None and offset <= committed):
        return None
    return offset


_faust_new_offset = Consumer._new_offset
_faust_consumer_init = Consumer.__init__


def install(app: Any) -> HandledOffsets:
    """Admit records in turn and commit what `app`'s agents report as handled."""
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer.__init__ = _consumer_init  # type: ignore[method-assign]
    handled = HandledOffsets(app)
    app.rapport_handled = handled

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        handled.forget(args[0] if args else kwargs.get("revoked", ()))

    app.on_partitions_revoked.connect(on_revoked)
    app.timer(interval=_CHECK_EVERY_SECONDS)(handled.check_stalled)
    return handled
