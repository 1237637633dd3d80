"""Idle input partitions, as stream processors handle them (Flink's `withIdleness`).

Decisions that wait for the event time of every input partition (referral's leads and
referrals, lifecycle's time rules) are held back by a partition that receives nothing: a pilot
of a few hundred customers, a small bank or a skewed key would see none of them. A partition is
**idle** when the worker that owns it

- holds it (it is assigned, the group is not rebalancing and the tables are recovered),
- has taken and settled every record up to its end, as the broker tells it at that moment
  (never while it is behind: a replay, a recovery, a backlog), and
- has seen no record of it for `RAPPORT_IDLE_PARTITION_SECONDS` [30] of wall-clock time
  (monotonic), counted from its assignment when no record came since.

Each worker speaks only for the partitions it holds (faust timers and tasks run on every
worker). The first record that comes ends the idleness. The quiet period counts only while the
worker can see: from a partition's first quiet second on, every check asks the broker where
the quiet partitions end, and a check it does not answer, or answers only after
`_SLOW_ANSWER_SECONDS` (it came back from a restart meanwhile), starts every quiet period
again. A broker restart pauses the bank's feed as well; the records held back by it come after
it and must not find their partition called idle on the quiet before it (a CI run saw two
leads differ from the uninterrupted run's when the worker counted the restart as quiet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError
from faust.exceptions import NotReady

from services.runtime.faust_fixes import HandledOffsets

log = logging.getLogger(__name__)

# How long the broker is given to say where the partitions end.
_ASK_TIMEOUT_SECONDS = 10.0
# An answer slower than this (an ask waits for the consumer thread's current fetch, at most
# 100 ms: services/runtime/faust_fetch.py) came after the broker was out of reach.
_SLOW_ANSWER_SECONDS = 3.0


class IdlePartitions:
    """Which partitions of one input topic, among those this worker holds, are idle."""

    def __init__(self, app: Any, topic: str, seconds: float) -> None:
        self.app = app
        self.topic = topic
        self.seconds = seconds
        self.handled: HandledOffsets = app.rapport_handled
        # Per partition: when its quiet period began, as far as this worker can vouch for it.
        self.quiet_since: dict[int, float] = {}
        # Partitions found idle, each with the arrival stamp it had then: a record that came
        # since (a new stamp) ends the idleness.
        self.idle: dict[int, float | None] = {}

    @property
    def check_every(self) -> float:
        """How often `refresh` should run: a small part of the interval, at most a second."""
        return max(0.25, min(1.0, self.seconds / 4))

    def _blind(self) -> bool:
        app = self.app
        recovery = app.tables.recovery
        return bool(
            app.rebalancing
            or not app.flow_control.is_active()
            or recovery.in_recovery
            or not recovery.completed.is_set()
        )

    def _start_over(self) -> None:
        self.quiet_since.clear()
        self.idle.clear()

    def _count_again(self, why: str) -> None:
        """The worker could not see the broker for a while: every quiet period starts now."""
        log.info("cannot tell whether %s partitions are idle (%s): counting again", self.topic, why)
        self.quiet_since = dict.fromkeys(self.quiet_since, time.monotonic())

    def assigned(self) -> dict[int, Any]:
        """The partitions of the topic this worker holds now, by number."""
        try:
            return {
                tp.partition: tp for tp in self.app.consumer.assignment() if tp.topic == self.topic
            }
        except (KafkaError, NotReady):
            return {}  # the consumer is starting or stopping

    def is_idle(self, partition: int) -> bool:
        """Whether the partition is idle now: found so, still held, and no record came since.
        Synchronous, so that a caller can act on the answer before any record can come."""
        if partition not in self.idle:
            return False
        if self._blind():
            self._start_over()
            return False
        tp = self.assigned().get(partition)
        if tp is None or self.handled.arrived(tp) != self.idle[partition]:
            del self.idle[partition]
            return False
        return True

    def partitions(self) -> set[int]:
        """Every partition idle now."""
        return {p for p in list(self.idle) if self.is_idle(p)}

    def discard(self, partition: int) -> None:
        """Forget that the partition was found idle (its next `refresh` checks it again)."""
        self.idle.pop(partition, None)

    async def refresh(self) -> list[int]:
        """Check the held partitions; return those found idle since the last call. The broker
        is asked about every partition quiet for a check or more, at every check: a quiet
        period counts only while the worker could see (a broker restart in the middle of it
        pauses the feed, and the records that were held back come after it)."""
        if self._blind():
            self._start_over()
            return []
        now = time.monotonic()
        assigned = self.assigned()
        for partition in list(self.quiet_since):
            if partition not in assigned:
                del self.quiet_since[partition]
        self.partitions()  # drops those that got records or were taken away
        quiet: list[Any] = []
        candidates: dict[int, tuple[Any, float | None]] = {}
        for partition, tp in assigned.items():
            if partition in self.idle:
                continue
            arrived = self.handled.arrived(tp)
            since = max(self.quiet_since.setdefault(partition, now), arrived or 0.0)
            if now - since < self.check_every:
                continue  # records are coming
            quiet.append(tp)
            if now - since < self.seconds:
                continue
            due, done = self.handled.next.get(tp), self.handled.done.get(tp)
            if due is not None and due != done:
                continue  # records taken into a batch that is not settled yet
            candidates[partition] = (tp, arrived)
        if not quiet:
            return []
        # Partitions nothing was taken of since they were assigned stand at the committed offset.
        unstarted = [
            tp
            for tp, _ in candidates.values()
            if self.handled.done.get(tp) is None and self.handled.next.get(tp) is None
        ]
        try:
            ends, starts = await asyncio.wait_for(
                self._positions(quiet, unstarted), _ASK_TIMEOUT_SECONDS
            )
        except (KafkaError, NotReady, OSError, TimeoutError, AssertionError) as exc:
            self._count_again(f"the broker did not answer: {exc!r}")
            return []
        took = time.monotonic() - now
        if took > _SLOW_ANSWER_SECONDS:
            # It answered after an outage (aiokafka retries within the timeout): the worker
            # was blind for about that long.
            self._count_again(f"the broker took {took:.1f} s to answer")
            return []
        if self._blind():
            self._start_over()
            return []
        found = []
        held = self.assigned()
        for partition, (tp, arrived) in candidates.items():
            if held.get(partition) != tp or self.handled.arrived(tp) != arrived:
                continue  # taken away, or a record came while the broker was asked
            due, done = self.handled.next.get(tp), self.handled.done.get(tp)
            position = done if done is not None else starts.get(tp)
            if position is None or (due is not None and due != done):
                continue
            end = ends.get(tp)
            if end is None or position < end:
                continue  # behind: records to take first
            self.idle[partition] = arrived
            found.append(partition)
        found.sort()  # the held set's order follows the string hash, which varies per process
        if found:
            log.info("%s: partitions %s idle", self.topic, found)
        return found

    async def _positions(
        self, tps: list[Any], unstarted: list[Any]
    ) -> tuple[dict[Any, int], dict[Any, int]]:
        """The partitions' ends as the broker says them now (not as last fetched: a broker
        that is down leaves those as they were), and where the `unstarted` ones start (the
        committed offset, or the first). One call on the consumer's thread, where aiokafka
        runs: each call waits for the thread's current fetch."""

        async def ask(client: Any) -> tuple[dict[Any, int], dict[Any, int]]:
            ends: dict[Any, int] = await client.end_offsets(tps)
            starts: dict[Any, int] = {}
            for tp in unstarted:
                committed = await client.committed(tp)
                if committed is not None:
                    starts[tp] = committed
            missing = [tp for tp in unstarted if tp not in starts]
            if missing:
                starts.update(await client.beginning_offsets(missing))
            return ends, starts

        thread = self.app.consumer._thread
        found: tuple[dict[Any, int], dict[Any, int]] = await thread.call_thread(
            ask, thread._ensure_consumer()
        )
        return found


OnCheck = Callable[[IdlePartitions, list[int]], Awaitable[None]]


def watch_idle(app: Any, topic: str, seconds: float, on_check: OnCheck) -> IdlePartitions:
    """Track the idle partitions of `topic` that this worker holds; every `check_every`
    seconds, `on_check` gets the tracker and the partitions found idle since the last check.
    A rebalance starts every quiet period again."""
    idle = IdlePartitions(app, topic, seconds)

    async def start_over(sender: Any, /, *_: Any, **__: Any) -> None:
        idle._start_over()

    app.on_partitions_revoked.connect(start_over)
    app.on_partitions_assigned.connect(start_over)

    async def check() -> None:
        # A loop rather than a timer: a check that waits for the broker longer than the
        # interval is no fault (a timer would warn of overlapping runs).
        while not app.should_stop:
            await app.sleep(idle.check_every)
            try:
                await on_check(idle, await idle.refresh())
            except asyncio.CancelledError:
                raise
            except Exception:
                # The next check tries again; a failing check must not stop the worker.
                log.exception("the check of idle %s partitions failed", topic)

    app.task(check)
    return idle
