"""Workaround for faust-streaming 0.15.3's back-pressure, which lets one agent that waits stop
the whole worker (faust-streaming/faust#229, "Conductor appears to be deadlocked"; the
back-pressure itself came with faust-streaming/faust#53). Remove it when a release throttles a
stream's topic as a whole and asks aiokafka for a fixed set of partitions.

What faust does. Each agent's stream has one buffer (`stream_buffer_maxsize`, 4,096 events) for
all the partitions of its topic. When the buffer passes 80 %, the partition of the record that
arrived is taken off the partitions the consumer fetches (`Consumer.on_buffer_full`); the other
partitions of the same topic go on until a record of each comes past the mark. Records already
fetched are still handed on, and one that finds the buffer full makes the consumer's single
drain loop wait (`Conductor.on_message`, `Consumer._drain_messages`): every topic of the worker
stops until that agent takes from its buffer.

Two things let a buffer fill anyway. The fetch asks aiokafka for faust's live set of active
partitions from the consumer's thread; aiokafka reads an empty set as "every partition"
(`Fetcher.fetched_records`: `if partitions and tp not in partitions`), so a fetch that waits
while the last active partitions are throttled returns the throttled ones too. And a poll was
not bounded: one returned every record fetched, about 1 MiB a partition, thousands of events.

Where it bit. Notify decides a derived event (a stage change, a ledger entry) only once this
worker has taken the input partition holding the customer's profile facts past the event's
time (`services.notify.agents.ProfileClock`). A notify worker restarted behind on all six of
its topics filled the ledger agent's buffer while that agent waited; the drain loop then waited
on the full buffer, so the input, whose records would end the wait, stopped too: every batch
waited the full profile wait (120 s), found in docs/benchmarks.md (2026-12-05).

The workaround: a buffer under pressure throttles every held partition of its topic, and lets
them all go again when it drains; each fetch asks for a copy of the active partitions taken
when it was asked; and a poll returns at most `MAX_POLL_RECORDS` records, fewer than the fifth
of a buffer left above the mark, so one poll cannot fill it.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

# faust's default stream buffer (`stream_buffer_maxsize`) and the share above the pressure mark
# (mode's `FlowControlQueue.pressure_high_ratio` of 1.25: 80 %).
STREAM_BUFFER_MAXSIZE = 4096
MAX_POLL_RECORDS = 500


def _topic_partitions(consumer: Any, topic: str) -> set[Any]:
    return {tp for tp in consumer.assignment() if tp.topic == topic}


def _on_buffer_full(self: Any, tp: Any) -> None:
    # faust leaves the partitions alone while its tables recover (faust-streaming/faust#74).
    if self.app.in_recovery:
        return
    active = self._get_active_partitions()
    for held in _topic_partitions(self, tp.topic) | {tp}:
        active.discard(held)
        self._buffered_partitions.add(held)


def _on_buffer_drop(self: Any, tp: Any) -> None:
    buffered = self._buffered_partitions
    if tp not in buffered:
        return
    active = self._get_active_partitions()
    for held in [t for t in buffered if t.topic == tp.topic]:
        buffered.discard(held)
        if held not in self._paused_partitions:
            active.add(held)


_faust_thread_getmany = AIOKafkaConsumerThread.getmany


# faust's signature, timeout included.
async def _getmany(self: Any, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109
    # A copy: the set faust passes changes under the fetch, and aiokafka takes an empty one
    # for all.
    partitions = None if active_partitions is None else set(active_partitions)
    return await _faust_thread_getmany(self, partitions, timeout)


def install() -> dict[str, Any]:
    """Patch faust's consumer; returns the app settings the workaround needs."""
    Consumer.on_buffer_full = _on_buffer_full  # type: ignore[method-assign]
    Consumer.on_buffer_drop = _on_buffer_drop  # type: ignore[method-assign]
    AIOKafkaConsumerThread.getmany = _getmany  # type: ignore[method-assign]
    return {
        "broker_max_poll_records": MAX_POLL_RECORDS,
        "stream_buffer_maxsize": STREAM_BUFFER_MAXSIZE,
    }
