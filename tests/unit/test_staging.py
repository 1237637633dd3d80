"""Batches of a table-backed worker: table writes wait for every output sent before them, are
made in order with the event that made them, and a batch reads its own held writes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.streams import current_event

from services.runtime.staging import BATCHING, StagedTable, Staging


class FakeEvent:
    def __init__(self, name: str) -> None:
        self.name = name


class RecordingTable(dict[str, bytes]):
    """A table that remembers which event each write was made under (its changelog
    partition comes from that event in faust)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, bytes | None]] = []

    def __setitem__(self, key: str, value: bytes) -> None:
        event = current_event()
        self.log.append((getattr(event, "name", "-"), key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        event = current_event()
        self.log.append((getattr(event, "name", "-"), key, None))
        super().__delitem__(key)


class ControlledTopic:
    """A topic, and its app's producer, whose acknowledgements the test gives (or fails) when
    it likes."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.acks: list[asyncio.Future[None]] = []
        self.app = SimpleNamespace(producer=self)

    def get_topic_name(self) -> str:
        return "rapport.outputs"

    async def send(
        self, topic: str, key: bytes, value: bytes, partition: Any, timestamp: Any, headers: Any
    ) -> Any:
        assert topic == "rapport.outputs"
        self.sent.append(value)
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack


def a_batch() -> tuple[Staging, ControlledTopic, RecordingTable, StagedTable]:
    """A staging in batching mode, a topic the test acknowledges, and a table seen through it."""
    staging, topic, table = Staging(), ControlledTopic(), RecordingTable()
    BATCHING.set(staging)
    return staging, topic, table, staging.table(table)


def in_event(name: str) -> Any:
    """Make `name` the current event, as the batching agent does for each record."""
    import weakref

    from faust.streams import _current_event

    event = FakeEvent(name)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    return event


async def test_writes_wait_for_the_outputs_sent_before_them() -> None:
    staging, topic, table, store = a_batch()
    table["old"] = b"0"
    first = in_event("e1")
    await staging.send(topic, b"k", b"out-1", None, None)
    store["c1"] = b"1"
    del store["old"]
    second = in_event("e2")
    await staging.send(topic, b"k", b"out-2", None, None)
    store["c1"] = b"2"
    # The batch reads its own writes; the table has none of them yet.
    assert store["c1"] == b"2" and "old" not in store and sorted(store) == ["c1"]
    assert table == {"old": b"0"}

    settling = asyncio.create_task(staging.settle())
    await asyncio.sleep(0)
    topic.acks[0].set_result(None)
    await asyncio.sleep(0)
    assert not settling.done() and table == {"old": b"0"}
    topic.acks[1].set_result(None)
    await settling
    assert table.log[1:] == [("e1", "c1", b"1"), ("e1", "old", None), ("e2", "c1", b"2")]
    assert table == {"c1": b"2"} and store.held == {}
    del first, second


async def test_a_latest_only_key_is_written_once_per_settle_at_its_last_place() -> None:
    staging, table = Staging(), RecordingTable()
    BATCHING.set(staging)
    store = staging.table(table, latest_only=lambda key: key.startswith("#"))
    first = in_event("e1")
    store["c1"] = b"1"
    store["#clock"] = b"t1"
    second = in_event("e2")
    store["c2"] = b"1"
    store["#clock"] = b"t2"
    assert store["#clock"] == b"t2"
    await staging.settle()
    # The clock lags the states before it in every prefix of the log, never runs ahead.
    assert table.log == [("e1", "c1", b"1"), ("e2", "c2", b"1"), ("e2", "#clock", b"t2")]
    assert store.held == {}
    del first, second


async def test_a_send_that_fails_is_sent_again_with_those_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("services.runtime.staging.asyncio.sleep", _no_sleep)
    staging, topic, table, store = a_batch()
    event = in_event("e1")
    await staging.send(topic, b"k", b"a", None, None)
    await staging.send(topic, b"k", b"b", None, None)
    store["c"] = b"1"
    topic.acks[0].set_exception(KafkaTimeoutError())
    topic.acks[1].set_result(None)
    settling = asyncio.create_task(staging.settle())
    for _ in range(100):  # until the two records are sent again
        if len(topic.acks) == 4:
            break
        await asyncio.sleep(0)
    assert topic.sent == [b"a", b"b", b"a", b"b"] and table == {}
    for ack in topic.acks[2:]:
        ack.set_result(None)
    await settling
    assert table == {"c": b"1"}
    del event


async def test_a_later_write_held_back_survives_the_settle_of_an_earlier_one() -> None:
    staging, topic, table, store = a_batch()
    event = in_event("e1")
    await staging.send(topic, b"k", b"a", None, None)
    store["c"] = b"1"
    settling = asyncio.create_task(staging.settle())
    await asyncio.sleep(0)
    store["c"] = b"2"  # made while the settle waits: the next settle's
    topic.acks[0].set_result(None)
    await settling
    assert table == {"c": b"1"} and store["c"] == b"2"
    await staging.settle()
    assert table == {"c": b"2"} and store.held == {}
    del event


async def test_two_agents_settles_write_in_the_order_the_writes_were_made() -> None:
    """Agent A settles, then agent B (sharing the table) writes the same key and settles; B's
    acknowledgements come back first. B waits for A, so the table ends with B's value."""
    staging, topic, table, store = a_batch()
    event = in_event("a")
    await staging.send(topic, b"k", b"from-a", None, None)
    store["index"] = b"old"
    settling_a = asyncio.create_task(staging.settle())
    await asyncio.sleep(0)
    event = in_event("b")
    await staging.send(topic, b"k", b"from-b", None, None)
    store["index"] = b"new"
    settling_b = asyncio.create_task(staging.settle())
    await asyncio.sleep(0)
    topic.acks[1].set_result(None)
    await asyncio.sleep(0)
    topic.acks[0].set_result(None)
    await asyncio.gather(settling_a, settling_b)
    assert [value for _, _, value in table.log] == [b"old", b"new"]
    assert table == {"index": b"new"} and store["index"] == b"new"
    del event


def test_outside_a_batch_writes_go_straight_to_the_table() -> None:
    staging, table = Staging(), RecordingTable()
    store = staging.table(table)
    BATCHING.set(None)
    store["c"] = b"1"
    del store["c"]
    assert table == {} and table.log == [("-", "c", b"1"), ("-", "c", None)]
    with pytest.raises(KeyError):
        del store["c"]


_sleep = asyncio.sleep


async def _no_sleep(_: float) -> None:
    await _sleep(0)


class PartitionedTable(dict[str, bytes]):
    """A table that, like faust's RocksDB store, finds a key only in the current event's
    partition when read under an event."""

    def __init__(self, partition_of: dict[str, str]) -> None:
        super().__init__()
        self.partition_of = partition_of

    def __getitem__(self, key: str) -> bytes:
        event = current_event()
        if event is not None and self.partition_of.get(key) != getattr(event, "name", None):
            raise KeyError(key)
        return super().__getitem__(key)


async def test_a_batch_reads_the_keys_of_every_partition_and_its_held_writes() -> None:
    staging = Staging()
    BATCHING.set(staging)
    table = PartitionedTable({"a": "p0", "b": "p1", "gone": "p1"})
    table.update({"a": b"1", "b": b"1", "gone": b"1"})
    store = staging.table(table)
    event = in_event("p0")
    store["c"] = b"2"
    del store["gone"]
    # Under an event of partition p0, p1's key is still found (the lifecycle calendar reads
    # every state the worker holds).
    assert store["b"] == b"1"
    assert sorted(store.items()) == [("a", b"1"), ("b", b"1"), ("c", b"2")]
    del event
