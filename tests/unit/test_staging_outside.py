"""Work outside an agent (a timer's) through `Staging.as_partition`: its sends and table
writes are held as a batch's, each write made as by an event of the partition named (faust
takes the changelog partition, and a RocksDB store its partition, from the current event), and
written only once the broker has every send before them."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.streams import current_event

from services.runtime.staging import BATCHING, Staging
from tests.unit.test_staging import ControlledTopic, RecordingTable


class PartitionTable(RecordingTable):
    """Records the topic and partition of the event each write was made under."""

    def __setitem__(self, key: str, value: bytes) -> None:
        event: Any = current_event()
        self.log.append((f"{event.message.topic}:{event.message.partition}", key, value))
        dict.__setitem__(self, key, value)


async def test_a_timers_writes_are_held_and_made_as_by_an_event_of_the_partition() -> None:
    staging, topic, table = Staging(), ControlledTopic(), PartitionTable()
    store = staging.table(table)
    assert BATCHING.get() is None  # a timer's task: no batch of its own
    with staging.as_partition("bank.account-events.v1", 4):
        await staging.send(topic, b"k", b"wake", None, None)
        store["Q"] = b"state"
        store["#clock:4"] = b"clock"
        assert store["#clock:4"] == b"clock"  # read back as held
    assert BATCHING.get() is None and current_event() is None
    assert table == {}
    settling = asyncio.create_task(staging.settle())
    await asyncio.sleep(0)
    assert not settling.done() and table == {}
    topic.acks[0].set_result(None)
    await settling
    assert table.log == [
        ("bank.account-events.v1:4", "Q", b"state"),
        ("bank.account-events.v1:4", "#clock:4", b"clock"),
    ]
    assert store.held == {}
