"""`HandledOffsets` admits each partition's records strictly in turn, from the committed offset,
and seeks back once when a record arrives from past a hole."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from services.runtime import faust_fixes
from services.runtime.faust_fixes import HandledOffsets, Turn, _NoReadOffsets


class FakeKafka:
    """The consumer thread and the aiokafka client behind a faust consumer, as used."""

    def __init__(self, committed: dict[str, int], earliest: int) -> None:
        self._committed = committed
        self._earliest = earliest
        self.seeks: list[tuple[str, int]] = []

    def _ensure_consumer(self) -> FakeKafka:
        return self

    async def call_thread(self, method: Any, *args: Any) -> Any:
        return await method(*args)

    async def committed(self, tp: str) -> int | None:
        return self._committed.get(tp)

    async def beginning_offsets(self, tps: list[str]) -> dict[str, int]:
        return dict.fromkeys(tps, self._earliest)

    async def seek(self, tp: str, offset: int) -> None:
        self.seeks.append((tp, offset))


class FakeConsumer:
    """Seeks are made on the consumer's thread (`_thread`), never through `Consumer.seek`."""

    def __init__(self, kafka: FakeKafka) -> None:
        self._thread = kafka
        self.ends: dict[int, int] = {}
        self._buffered_partitions: set[TP] = set()

    @property
    def seeks(self) -> list[tuple[str, int]]:
        return self._thread.seeks

    def assignment(self) -> set[TP]:
        return {TP("t", partition) for partition in self.ends}

    def highwater(self, tp: TP) -> int:
        return self.ends[tp.partition]


def handled_offsets(
    committed: dict[str, int], earliest: int = 0
) -> tuple[HandledOffsets, FakeConsumer]:
    consumer = FakeConsumer(FakeKafka(committed, earliest))
    ready = SimpleNamespace(is_set=lambda: True)
    app = SimpleNamespace(
        consumer=consumer,
        rebalancing=False,
        flow_control=SimpleNamespace(is_active=lambda: True),
        tables=SimpleNamespace(recovery=SimpleNamespace(in_recovery=False, completed=ready)),
    )
    return HandledOffsets(app), consumer


def guarded(monkeypatch: Any) -> tuple[HandledOffsets, FakeConsumer, list[float]]:
    """Handled offsets guarding topic "t", on a clock the test moves (`clock[0]`)."""
    offsets, consumer = handled_offsets({})
    offsets.topics.add("t")
    clock = [100.0]
    monkeypatch.setattr(faust_fixes.time, "monotonic", lambda: clock[0])
    return offsets, consumer, clock


async def test_records_in_turn_from_the_committed_offset() -> None:
    offsets, consumer = handled_offsets({"p0": 10})
    assert await offsets.turn("p0", 9) is Turn.HANDLED  # redelivered before the committed offset
    assert await offsets.turn("p0", 10) is Turn.DUE
    offsets.handled("p0", 10)
    assert await offsets.turn("p0", 10) is Turn.HANDLED  # again, after a seek back
    assert await offsets.turn("p0", 11) is Turn.DUE
    assert consumer.seeks == []


async def test_a_record_past_a_hole_seeks_back_once() -> None:
    offsets, consumer = handled_offsets({"p0": 10})
    assert await offsets.turn("p0", 50) is Turn.AHEAD
    assert await offsets.turn("p0", 51) is Turn.AHEAD  # fetched before the seek: no second seek
    assert consumer.seeks == [("p0", 10)]
    assert await offsets.turn("p0", 10) is Turn.DUE
    offsets.handled("p0", 10)
    assert offsets.next["p0"] == 11


async def test_never_committed_partition_starts_at_its_first_offset() -> None:
    offsets, consumer = handled_offsets({}, earliest=3)
    assert await offsets.turn("p1", 7) is Turn.AHEAD
    assert consumer.seeks == [("p1", 3)]


async def test_revoked_partitions_start_again_from_the_committed_offset() -> None:
    committed = {"p0": 5}
    offsets, _ = handled_offsets(committed)
    assert await offsets.turn("p0", 5) is Turn.DUE
    offsets.handled("p0", 5)
    offsets.forget(["p0"])
    committed["p0"] = 6
    assert await offsets.turn("p0", 6) is Turn.DUE


def test_faust_read_offsets_never_drop_a_record() -> None:
    read = _NoReadOffsets()
    read["p0"] = 100
    read.update({"p0": 200})
    assert read["p0"] is None


async def test_a_partition_whose_due_record_never_comes_is_sought_back(monkeypatch: Any) -> None:
    """The records dropped were the partition's last: no later record shows the hole."""
    offsets, consumer, clock = guarded(monkeypatch)
    tp = TP("t", 0)
    consumer.ends = {0: 40}
    offsets.next[tp] = 30
    offsets._came[tp] = 90.0  # it gave records since it was assigned
    await offsets.check_stalled()  # first seen now
    clock[0] += faust_fixes._STALLED_AFTER_SECONDS - 1
    await offsets.check_stalled()
    assert consumer.seeks == []
    clock[0] += 2
    await offsets.check_stalled()
    assert consumer.seeks == [(tp, 30)]
    await offsets.check_stalled()  # given time to take effect before it is asked for again
    assert consumer.seeks == [(tp, 30)]


async def test_a_partition_handled_to_its_end_is_left_alone(monkeypatch: Any) -> None:
    offsets, consumer, clock = guarded(monkeypatch)
    tp = TP("t", 0)
    consumer.ends = {0: 40}
    offsets.next[tp] = 40
    await offsets.check_stalled()
    clock[0] += 60
    await offsets.check_stalled()
    assert consumer.seeks == []


async def test_a_partition_held_back_for_a_full_buffer_is_left_alone(monkeypatch: Any) -> None:
    """Its agent is busy or waiting (services/runtime/faust_flow.py): nothing was dropped."""
    offsets, consumer, clock = guarded(monkeypatch)
    tp = TP("t", 0)
    consumer.ends = {0: 40}
    offsets.next[tp] = 30
    consumer._buffered_partitions.add(tp)
    await offsets.check_stalled()
    clock[0] += 60
    await offsets.check_stalled()
    assert consumer.seeks == []
    consumer._buffered_partitions.clear()  # fetched again: its quiet time starts now
    clock[0] += faust_fixes._STALLED_AFTER_SECONDS - 1
    await offsets.check_stalled()
    assert consumer.seeks == []
    clock[0] += 2
    await offsets.check_stalled()
    assert consumer.seeks == [(tp, 30)]


async def test_a_partition_that_gave_nothing_since_it_was_assigned_is_sought_back_at_once(
    monkeypatch: Any,
) -> None:
    """Records fetched around the rebalance were dropped (a restarted worker's one new record):
    no quiet time is waited for; once sought, the usual quiet time applies."""
    offsets, consumer = handled_offsets({"t0": 0})
    offsets.topics.add("t")
    clock = [100.0]
    monkeypatch.setattr(faust_fixes.time, "monotonic", lambda: clock[0])
    tp, idle, unstarted = TP("t", 0), TP("t", 1), TP("t", 2)
    consumer.ends = {0: 41, 1: 7, 2: 5}
    offsets.next[tp], offsets.next[idle] = 40, 7
    await offsets.check_stalled()
    # The idle partition, handled to its end, is left alone; one nothing was taken of is sought
    # to its committed offset (here its first), which is not stored as the next to handle: the
    # idle check reads such a partition as standing at its committed offset.
    assert sorted(consumer.seeks) == [(tp, 40), (unstarted, 0)]
    assert unstarted not in offsets.next
    clock[0] += faust_fixes._STALLED_AFTER_SECONDS - 1
    await offsets.check_stalled()
    assert len(consumer.seeks) == 2


async def test_a_partition_not_fetched_yet_is_judged_once_it_is(monkeypatch: Any) -> None:
    offsets, consumer, clock = guarded(monkeypatch)
    tp = TP("t", 0)
    ends: dict[int, int | None] = {0: None}
    consumer.ends = ends  # type: ignore[assignment]
    offsets.next[tp] = 40
    await offsets.check_stalled()
    ends[0] = 41
    clock[0] += 1
    await offsets.check_stalled()
    assert consumer.seeks == [(tp, 40)]


async def test_progress_wakes_every_waiter_at_the_next_record_handled() -> None:
    """notify's wait for profile facts sleeps on `progress`: it wakes when a record is
    reported handled, two concurrent waits alike, and otherwise only after its most."""
    handled, _ = handled_offsets({})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await handled.progress(0.05)
    assert loop.time() - started >= 0.05  # nothing handled: the whole wait

    waits = [asyncio.create_task(handled.progress(30)) for _ in range(2)]
    await asyncio.sleep(0)  # both are waiting
    started = loop.time()
    handled.handled(TP("t", 0), 4)
    await asyncio.wait_for(asyncio.gather(*waits), 5)
    assert loop.time() - started < 1
    assert not handled._waiting
