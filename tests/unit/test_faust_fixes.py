"""`HandledOffsets` admits each partition's records strictly in turn, from the committed offset,
and seeks back once when a record arrives from past a hole."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from services.runtime.faust_fixes import HandledOffsets, Turn, _NoReadOffsets


class FakeKafka:
    """The consumer thread and the aiokafka client behind a faust consumer, as used."""

    def __init__(self, committed: dict[str, int], earliest: int) -> None:
        self._committed = committed
        self._earliest = earliest

    def _ensure_consumer(self) -> FakeKafka:
        return self

    async def call_thread(self, method: Any, *args: Any) -> Any:
        return await method(*args)

    async def committed(self, tp: str) -> int | None:
        return self._committed.get(tp)

    async def beginning_offsets(self, tps: list[str]) -> dict[str, int]:
        return dict.fromkeys(tps, self._earliest)


class FakeConsumer:
    def __init__(self, kafka: FakeKafka) -> None:
        self._thread = kafka
        self.seeks: list[tuple[str, int]] = []

    async def seek(self, tp: str, offset: int) -> None:
        self.seeks.append((tp, offset))


def handled_offsets(
    committed: dict[str, int], earliest: int = 0
) -> tuple[HandledOffsets, FakeConsumer]:
    consumer = FakeConsumer(FakeKafka(committed, earliest))
    app = SimpleNamespace(consumer=consumer)
    return HandledOffsets(app), consumer


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
