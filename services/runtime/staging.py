"""Batches for table-backed workers: outputs sent without waiting, table writes held back until
the broker has every output sent before them.

A worker's rule is "an output is acknowledged before the state that records it is written"
(a crash then replays the event into the same outputs instead of losing them). Applied per
event, it costs a broker round trip per event with outputs. In a batch the same rule holds for
the batch: the agent handles its events against a view of the tables that includes the writes
held back (`StagedTable`), and `Staging.settle` waits for every output sent so far, then writes
the tables in the order the writes were made, each with the event that made it (its changelog
partition is the event's partition), and only then may the agent report the events as handled.

One `Staging` serves all the agents of an app: two agents that write the same table (the
referral worker's account events and steps) then read each other's held-back writes, and a
settle writes a prefix of everybody's writes, each of which came after the outputs it depends
on were sent, and those are all awaited first. Settles run one at a time, so the prefixes reach
the tables (and their changelogs) in the order the writes were made.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import KafkaError
from faust.streams import _current_event, current_event

log = logging.getLogger(__name__)

_DELETED = object()

# Set in the task of a batching agent: its sends are acknowledged at the next settle.
BATCHING: ContextVar[Staging | None] = ContextVar("rapport_batching", default=None)


async def produce(topic: Any, key: bytes, value: bytes, partition: int | None, headers: Any) -> Any:
    """Hand one record of raw bytes to the app's producer; the awaitable it returns completes
    when the broker has it. Goes past faust's `Topic.send`, whose future message, serialisers
    and sensor calls per record had cost a worker more than the producing itself."""
    return await topic.app.producer.send(
        topic.get_topic_name(), key, value, partition, None, headers
    )


class _Origin:
    """What faust reads of the current event when a table is written (the topic and partition
    that name the changelog partition): stands for the event that work outside an agent (a
    timer's) does not have."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = SimpleNamespace(topic=topic, partition=partition)


@dataclass
class _Send:
    topic: Any
    key: bytes
    value: bytes
    partition: int | None
    headers: Any


@dataclass
class Staging:
    """The held-back table writes and the unacknowledged sends of an app's batching agents."""

    sends: list[_Send] = field(default_factory=list)
    acks: list[Any] = field(default_factory=list)
    # (event, table, key, value or _DELETED), in the order they were made.
    writes: list[tuple[Any, StagedTable, str, Any]] = field(default_factory=list)
    # One settle at a time: two agents' settles whose acknowledgements came back in the other
    # order wrote an older value of a shared key over a newer one (the referral worker lost a
    # counterparty from its index of pending links so).
    settling: asyncio.Lock = field(default_factory=asyncio.Lock)

    def table(self, table: Any, latest_only: Callable[[str], bool] | None = None) -> StagedTable:
        """`table` seen with the held writes. `latest_only` names keys of which a settle writes
        only the last value, at the last write's place: keys whose stored value may lag behind
        the writes after it (a crash then replays from an older value), never run ahead."""
        return StagedTable(self, table, latest_only)

    @contextmanager
    def as_partition(self, topic: str, partition: int) -> Iterator[None]:
        """Outside an agent (in a timer): sends and table writes held as a batch's, the
        writes made as by an event of `partition` of `topic` (their changelog partition is
        that one); `settle` then writes them after every send before them, as it does a
        batch's. Reads see the held writes of every agent, as theirs see these."""
        origin = _Origin(topic, partition)  # held here: the context keeps only a weak reference
        batching = BATCHING.set(self)
        event = _current_event.set(weakref.ref(origin))  # type: ignore[arg-type]
        try:
            yield
        finally:
            _current_event.reset(event)
            BATCHING.reset(batching)

    async def send(
        self, topic: Any, key: bytes, value: bytes, partition: int | None, headers: Any
    ) -> None:
        self.sends.append(_Send(topic, key, value, partition, headers))
        self.acks.append(await produce(topic, key, value, partition, headers))

    async def settle(self) -> None:
        """Wait until the broker has every record sent so far, then write the tables up to
        here. A send that failed is sent again, with all the others of this settle after it
        (consumers de-duplicate by id), until the broker has it."""
        async with self.settling:
            await self._settle()

    async def _settle(self) -> None:
        sends, acks, writes = self.sends, self.acks, self.writes
        self.sends, self.acks, self.writes = [], [], []
        attempt = 0
        while True:
            try:
                await asyncio.gather(*acks)
                break
            except (TimeoutError, KafkaError, ConnectionError) as exc:
                attempt += 1
                log.warning(
                    "%d records not acknowledged (%s); sending again (%d)", len(sends), exc, attempt
                )
                await asyncio.sleep(min(0.5 * 2**attempt, 10.0))
                acks = [
                    await produce(s.topic, s.key, s.value, s.partition, s.headers) for s in sends
                ]
        last = {
            (id(table), key): n
            for n, (_, table, key, _) in enumerate(writes)
            if table.latest_only is not None and table.latest_only(key)
        }
        for n, (event, table, key, value) in enumerate(writes):
            if last.get((id(table), key), n) == n:
                table.write_through(event, key, value)


class StagedTable(MutableMapping[str, bytes]):
    """A faust table seen with the writes its batch holds back; written through outside one."""

    def __init__(
        self, staging: Staging, table: Any, latest_only: Callable[[str], bool] | None = None
    ) -> None:
        self.staging = staging
        self.table = table
        self.latest_only = latest_only
        self.held: dict[str, Any] = {}

    def __getitem__(self, key: str) -> bytes:
        if key in self.held:
            value = self.held[key]
            if value is _DELETED:
                raise KeyError(key)
            return value  # type: ignore[no-any-return]
        try:
            return self.table[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        # Not in the current event's partition: a RocksDB store looks only there under an
        # event, and a worker also reads keys of the other partitions it holds (the lifecycle
        # calendar, built from every state). Read as outside any event, it looks in all of them,
        # as a memory store always does. The event's own partition first, where the keys a
        # handler reads almost always are: looking in all of them costs a lookup in each.
        token = _current_event.set(None)
        try:
            return self.table[key]  # type: ignore[no-any-return]
        finally:
            _current_event.reset(token)

    def __setitem__(self, key: str, value: bytes) -> None:
        self._write(key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._write(key, _DELETED)

    def __iter__(self) -> Iterator[str]:
        for key in self.table:
            if key not in self.held:
                yield key
        for key, value in list(self.held.items()):
            if value is not _DELETED:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def items(self) -> Iterator[tuple[str, bytes]]:  # type: ignore[override]
        """Every key with its value, the table's in one pass over its stores: reading each key
        on its own would look it up in every partition's RocksDB store (`__getitem__`)."""
        for key, value in self.table.items():
            if key not in self.held:
                yield key, value
        for key, value in list(self.held.items()):
            if value is not _DELETED:
                yield key, value

    def _write(self, key: str, value: Any) -> None:
        if BATCHING.get() is None:
            self.write_through(current_event(), key, value)
            return
        self.held[key] = value
        self.staging.writes.append((current_event(), self, key, value))

    def write_through(self, event: Any, key: str, value: Any) -> None:
        """Write the table as `event` would (its partition names the changelog's), and drop
        the held value if no later write replaced it."""
        token = _current_event.set(None if event is None else weakref.ref(event))
        try:
            if value is _DELETED:
                if key in self.table:
                    del self.table[key]
            else:
                self.table[key] = value
        finally:
            _current_event.reset(token)
        if key in self.held and self.held[key] is value:
            del self.held[key]
