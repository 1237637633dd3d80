"""`IdlePartitions`: a partition is idle only when its worker holds it, has taken and settled
every record up to the end the broker gives, and saw no record of it for the interval."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.types import TP

from services.runtime import faust_fixes, idle
from services.runtime.faust_fixes import HandledOffsets
from services.runtime.idle import IdlePartitions

TOPIC = "bank.account-events.v1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Broker:
    """The aiokafka client behind faust's consumer thread, as the tracker asks it."""

    def __init__(self) -> None:
        self.ends: dict[TP, int] = {}
        self.committed_offsets: dict[TP, int] = {}
        self.down = False
        self.asked = 0
        # Seconds an answer takes (one that comes back after an outage is slow).
        self.answer_after = 0.0
        self.clock: Clock | None = None

    def _ensure_consumer(self) -> Broker:
        return self

    async def call_thread(self, method: Any, *args: Any) -> Any:
        return await method(*args)

    async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        self.asked += 1
        if self.down:
            raise KafkaTimeoutError()
        if self.clock is not None:
            self.clock.now += self.answer_after
        return {tp: self.ends.get(tp, 0) for tp in tps}

    async def committed(self, tp: TP) -> int | None:
        return self.committed_offsets.get(tp)

    async def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return dict.fromkeys(tps, 0)


class Worker:
    def __init__(self, partitions: int = 2) -> None:
        self.broker = Broker()
        self.held = {TP(TOPIC, p) for p in range(partitions)} | {TP("other", 0)}
        ready = SimpleNamespace(is_set=lambda: True)
        self.app = SimpleNamespace(
            consumer=SimpleNamespace(_thread=self.broker, assignment=lambda: self.held),
            rebalancing=False,
            flow_control=SimpleNamespace(is_active=lambda: True),
            tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=False, completed=ready)),
        )
        self.handled = HandledOffsets(self.app)
        self.app.rapport_handled = self.handled
        self.idle = IdlePartitions(self.app, TOPIC, seconds=30)

    async def take(self, partition: int, offset: int) -> None:
        """A record comes and its batch settles."""
        tp = TP(TOPIC, partition)
        self.broker.ends[tp] = max(self.broker.ends.get(tp, 0), offset + 1)
        assert await self.handled.turn(tp, offset) is faust_fixes.Turn.DUE
        self.handled.admit(tp, offset)
        self.handled.handled(tp, offset)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(idle, "time", fake)
    monkeypatch.setattr(faust_fixes, "time", fake)
    return fake


async def test_a_partition_taken_to_its_end_and_quiet_for_the_interval_is_idle(
    clock: Clock,
) -> None:
    worker = Worker()
    assert await worker.idle.refresh() == []  # the partitions are seen held: the count begins
    for offset in range(3):
        await worker.take(0, offset)
    clock.now += 29
    assert await worker.idle.refresh() == []
    assert worker.broker.asked == 1  # watched through the quiet period
    clock.now += 2
    # Partition 1 never had a record: it counts from when the worker first saw it held.
    assert await worker.idle.refresh() == [0, 1]
    assert worker.idle.partitions() == {0, 1}
    assert await worker.idle.refresh() == []  # found once per idle period


async def test_a_record_ends_the_idleness_and_starts_a_new_quiet_period(clock: Clock) -> None:
    worker = Worker()
    assert await worker.idle.refresh() == []  # the partitions are seen held: the count begins
    await worker.take(0, 0)
    clock.now += 31
    assert await worker.idle.refresh() == [0, 1]
    clock.now += 1
    await worker.take(0, 1)
    assert not worker.idle.is_idle(0)
    assert worker.idle.is_idle(1)
    clock.now += 29
    assert await worker.idle.refresh() == []
    clock.now += 2
    assert await worker.idle.refresh() == [0]


async def test_a_partition_behind_its_end_is_never_idle(clock: Clock) -> None:
    """A replay, a recovery or a backlog: records wait, however long none came to the agent."""
    worker = Worker(partitions=1)
    tp = TP(TOPIC, 0)
    await worker.take(0, 0)
    worker.broker.ends[tp] = 500
    clock.now += 300
    assert await worker.idle.refresh() == []
    # Taken into a batch that is not settled yet: not idle either.
    assert await worker.handled.turn(tp, 1) is faust_fixes.Turn.DUE
    worker.handled.admit(tp, 1)
    worker.broker.ends[tp] = 2
    clock.now += 300
    assert await worker.idle.refresh() == []
    worker.handled.handled(tp, 1)
    clock.now += 31
    assert await worker.idle.refresh() == [0]


async def test_an_unassigned_partition_stands_at_its_committed_offset(clock: Clock) -> None:
    worker = Worker(partitions=1)
    tp = TP(TOPIC, 0)
    worker.broker.ends[tp] = 40
    worker.broker.committed_offsets[tp] = 39  # a record the worker has yet to take
    await worker.idle.refresh()
    clock.now += 31
    assert await worker.idle.refresh() == []
    worker.broker.committed_offsets[tp] = 40
    assert await worker.idle.refresh() == [0]


async def test_a_broker_that_does_not_answer_or_a_rebalance_starts_the_count_again(
    clock: Clock,
) -> None:
    worker = Worker(partitions=1)
    await worker.idle.refresh()
    await worker.take(0, 0)
    clock.now += 31
    worker.broker.down = True
    assert await worker.idle.refresh() == []
    worker.broker.down = False
    clock.now += 29
    assert await worker.idle.refresh() == []  # the quiet period began again when it was blind
    clock.now += 2
    assert await worker.idle.refresh() == [0]
    worker.app.rebalancing = True
    assert await worker.idle.refresh() == []
    assert not worker.idle.is_idle(0)
    worker.app.rebalancing = False
    assert await worker.idle.refresh() == []  # held again: the count begins
    clock.now += 29
    assert await worker.idle.refresh() == []
    clock.now += 2
    assert await worker.idle.refresh() == [0]


async def test_a_partition_taken_away_is_not_idle(clock: Clock) -> None:
    worker = Worker(partitions=2)
    clock.now += 1
    await worker.idle.refresh()
    clock.now += 31
    assert await worker.idle.refresh() == [0, 1]
    worker.held.discard(TP(TOPIC, 1))
    assert worker.idle.partitions() == {0}
    assert worker.idle.assigned().keys() == {0}


async def test_records_coming_are_not_asked_about(clock: Clock) -> None:
    worker = Worker(partitions=1)
    await worker.idle.refresh()
    for offset in range(5):
        clock.now += 0.2
        await worker.take(0, offset)
        assert await worker.idle.refresh() == []
    assert worker.broker.asked == 0


async def test_a_broker_restart_in_the_quiet_period_starts_the_count_again(clock: Clock) -> None:
    """The feed pauses while the broker is down; the worker must not take that for quiet."""
    worker = Worker(partitions=1)
    worker.broker.clock = clock
    await worker.idle.refresh()
    await worker.take(0, 0)
    clock.now += 5
    worker.broker.down = True  # a check in the middle of the quiet period is refused
    assert await worker.idle.refresh() == []
    worker.broker.down = False
    clock.now += 26
    assert await worker.idle.refresh() == []  # 31 s since the record, 26 s since it saw
    clock.now += 4
    assert await worker.idle.refresh() == [0]
    # An answer that came only after an outage (aiokafka retried meanwhile) counts as blind.
    await worker.take(0, 1)
    clock.now += 31
    worker.broker.answer_after = 4.0
    assert await worker.idle.refresh() == []
    worker.broker.answer_after = 0.0
    clock.now += 29
    assert await worker.idle.refresh() == []
    clock.now += 2
    assert await worker.idle.refresh() == [0]
