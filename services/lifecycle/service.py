"""The lifecycle service layer: the events of one input partition through the rules, with the
partition's own event-time clock and a calendar of customer deadlines, over a plain key-value
store (a changelogged faust table in the worker, a dict in the tests).

Everything of a partition lives in one store, so that its changelog is a single ordered log: a
crash keeps a prefix of the writes, never a later write without an earlier one. It holds two
kinds of key:

- a customer's state, headed by the partition and the day the customer next wakes on
  (`encode_state`). The calendar is an index of those heads, kept in memory and built again
  from the store after a restart or a rebalance: a deadline can never be lost apart from the
  state it belongs to;
- a partition's clock: the highest event time seen, and the last day whose wakes were done;
  while the partition is idle, also the clock of the other partitions it followed (`follow`,
  docs/lifecycle.md "Time").

The clock only says how far the partition was taken, so it may lag behind the states written
before it (a crash there replays events that are then duplicates, and wakes again customers who
then have nothing due), but it must never run ahead of them: events replayed under a later
clock would be judged at another time. Each event writes its customers first and the clock
last. A batch may then write each key once, at its last write (`Staging.table(latest_only=
...)`): the last event's clock comes after every state, and a crash inside the batch's writes
leaves each customer either as before the batch or as after it, under the clock of before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
import orjson

from schemas.account_events import AccountEvent, CustomerUpdated
from services.lifecycle.domain import (
    CustomerState,
    LifecycleRules,
    Output,
    Pseudonyms,
    advance,
    apply_event,
    next_deadline,
)
from services.runtime.pseudonym import counterparty_key, name_key

Store = MutableMapping[str, bytes]
Publish = Callable[[list[Output]], Awaitable[None]]

# Customer ids start with a letter or digit (schemas.account_events), so "#" never collides.
_CLOCK = "#clock:{partition}"
# Calendar days as stored by versions before the calendar moved into the states' heads: read
# (their customers wake on that day until saved again), never written.
_LEGACY_DAY = "#due:"


def _now(clock: dict[str, str], lateness: timedelta) -> datetime:
    """A stored clock's time: the newest event time less the allowed lateness, or the floor
    it followed while idle when that is later."""
    now = datetime.fromisoformat(clock["max"]) - lateness
    floor = clock.get("floor")
    return max(now, datetime.fromisoformat(floor)) if floor is not None else now


def is_customer_key(key: str) -> bool:
    """Whether a store key holds a customer's state (not a clock or a calendar day)."""
    return not key.startswith("#")


_STATE_JSON = msgspec.json.Encoder()
_STATE = msgspec.json.Decoder(CustomerState)


def encode_state(state: CustomerState, partition: int, wake_day: int | None) -> bytes:
    """A stored state: `partition wake_day|` (0 for no wake) and the state's JSON, without the
    fields still at their defaults: most of a young customer's 40 fields are, and writing them
    made every state about 700 bytes longer, in memory, on disk and in the changelog."""
    return b"%d %d|" % (partition, wake_day or 0) + _STATE_JSON.encode(state)


def decode_head(raw: bytes) -> tuple[int, int | None] | None:
    """(partition, wake day) of a stored state; None for a state stored without them."""
    if raw[:1] == b"{":
        return None
    head = raw[: raw.index(b"|")].split()
    return int(head[0]), int(head[1]) or None


def decode_state(raw: bytes) -> CustomerState:
    """A stored state (`encode_state`'s bytes, or a state stored before its head) as a
    `CustomerState`."""
    body = raw if raw[:1] == b"{" else raw[raw.index(b"|") + 1 :]
    try:
        return _STATE.decode(body)
    except msgspec.ValidationError:
        # States saved before 2026-12-06 kept each recent event id with an ISO time.
        # Read as epoch seconds; anything else wrong fails again.
        fields = orjson.loads(body)
        fields["recent_event_ids"] = {
            event_id: int(datetime.fromisoformat(at).timestamp()) if isinstance(at, str) else at
            for event_id, at in fields.get("recent_event_ids", {}).items()
        }
        return _STATE.decode(orjson.dumps(fields))


class Calendar:
    """Which customers of each partition wake on which day, in the order they were placed."""

    def __init__(self) -> None:
        self.days: dict[int, dict[int, dict[str, None]]] = {}
        self.placed: dict[str, tuple[int, int]] = {}

    def place(self, customer_id: str, partition: int, day: int | None) -> None:
        old = self.placed.pop(customer_id, None)
        if old is not None:
            bucket = self.days[old[0]][old[1]]
            del bucket[customer_id]
            if not bucket:
                del self.days[old[0]][old[1]]
        if day is not None:
            self.days.setdefault(partition, {}).setdefault(day, {})[customer_id] = None
            self.placed[customer_id] = (partition, day)

    def take(self, partition: int, before: int) -> Iterator[str]:
        """The customers of `partition` due on a day before `before`, day by day; each is
        taken off the calendar as it is yielded (saving it places it again)."""
        days = self.days.get(partition, {})
        for day in sorted(d for d in days if d < before):
            for customer_id in list(days.get(day, ())):
                self.place(customer_id, partition, None)
                yield customer_id

    @classmethod
    def of(cls, store: Store) -> Calendar:
        """The calendar the stored states say."""
        calendar = cls()
        legacy: list[tuple[int, int, bytes]] = []
        for key, raw in list(store.items()):
            if key.startswith(_LEGACY_DAY):
                _, partition, day = key.split(":")
                legacy.append((int(day), int(partition), raw))
            elif is_customer_key(key) and (head := decode_head(raw)) is not None:
                calendar.place(key, *head)
        for legacy_day, legacy_partition, raw in sorted(legacy):
            for customer_id in orjson.loads(raw):
                stored = store.get(customer_id)
                if customer_id not in calendar.placed and stored and decode_head(stored) is None:
                    calendar.place(customer_id, legacy_partition, legacy_day)
        return calendar


def pseudonyms(event: AccountEvent, secret: bytes) -> Pseudonyms:
    """Keyed pseudonyms of the event's counterparty (account and name) and of a profile's
    holder name: the rules compare these, never raw account numbers or names."""
    holder = None
    if isinstance(event, CustomerUpdated) and event.profile.name is not None:
        holder = name_key(event.profile.name, secret)
    counterparty = getattr(event, "counterparty", None)
    if counterparty is None:
        return Pseudonyms(holder_name=holder)
    return Pseudonyms(
        counterparty=counterparty_key(counterparty.bank_code, counterparty.account, secret),
        counterparty_name=None
        if counterparty.name is None
        else name_key(counterparty.name, secret),
        holder_name=holder,
    )


@dataclass(frozen=True)
class Processed:
    """What handling one event amounted to, for the metrics."""

    duplicate: bool
    late: bool
    lag_seconds: float


class LifecycleService:
    """Applies events and the passing of event time to the customers of any partition."""

    def __init__(
        self,
        store: Store,
        publish: Publish,
        rules: LifecycleRules,
        lateness: timedelta,
        secret: bytes,
    ) -> None:
        self.store = store
        self.publish = publish
        self.rules = rules
        self.lateness = lateness
        self.secret = secret
        # Customers whose state changed since the read model last took them.
        self.changed: set[str] = set()
        self._calendar: Calendar | None = None
        # One at a time per partition: its events, and its clock following the others'.
        self._partition_locks: dict[int, asyncio.Lock] = {}

    @property
    def calendar(self) -> Calendar:
        if self._calendar is None:
            self._calendar = Calendar.of(self.store)
        return self._calendar

    def forget_calendar(self) -> None:
        """The store's partitions changed (a rebalance): the calendar is built again when next
        needed."""
        self._calendar = None

    def load(self, customer_id: str) -> CustomerState | None:
        """A customer's state, or None for a customer never seen."""
        raw = self.store.get(customer_id)
        return None if raw is None else decode_state(raw)

    def customer_ids(self, live: bool = False) -> Iterator[str]:
        """Every customer in the store: from a list of its keys made now, or (`live`) read from
        the store as the iterator is taken, for a store that writes meanwhile do not disturb
        (RocksDB's iterators read a snapshot; a dict's fail at the next write). A rebalance
        meanwhile may end a live iterator with a RuntimeError."""
        keys = iter(self.store) if live else list(self.store)
        return (key for key in keys if is_customer_key(key))

    def _save(self, state: CustomerState, partition: int, scanned: int) -> None:
        state.version += 1
        due = next_deadline(state, self.rules)
        # A deadline on a day the clock already passed is handled on the next day it scans.
        wake_day = None if due is None else max(due.toordinal(), scanned + 1)
        self.store[state.customer_id] = encode_state(state, partition, wake_day)
        self.calendar.place(state.customer_id, partition, wake_day)
        self.changed.add(state.customer_id)

    def _lock(self, partition: int) -> asyncio.Lock:
        lock = self._partition_locks.get(partition)
        if lock is None:
            lock = self._partition_locks[partition] = asyncio.Lock()
        return lock

    def clock(self, partition: int) -> datetime | None:
        """The partition's clock: its newest event time less the allowed lateness, or the
        clock it followed while idle when that is later; None before its first event."""
        clock = orjson.loads(self.store.get(_CLOCK.format(partition=partition)) or b"{}")
        if "max" not in clock:
            return None
        return _now(clock, self.lateness)

    async def handle(
        self, event: AccountEvent, partition: int, offset: int | None = None
    ) -> Processed:
        """Apply one event, then wake the customers whose deadlines the clock has passed.
        `offset`: the record's, so that a redelivery is known however long ago the event was
        applied (None: duplicates are known by their ids only)."""
        async with self._lock(partition):
            return await self._handle(event, partition, offset)

    async def follow(
        self, partition: int, target: datetime, still_idle: Callable[[], bool]
    ) -> bool:
        """An idle partition's clock follows `target` (the other partitions' clock, a day or
        more ahead of its own): the customers whose deadlines it passes wake as they would at
        an event of that time, then the clock is written, last, with `target` as its floor.
        `still_idle` is asked once no event of the partition can be under way: a record that
        came meanwhile cancels it. Nothing for a partition without a clock (no customer).
        Returns whether it followed."""
        async with self._lock(partition):
            clock_key = _CLOCK.format(partition=partition)
            clock = orjson.loads(self.store.get(clock_key) or b"{}")
            if "max" not in clock or not still_idle():
                return False
            now = _now(clock, self.lateness)
            today = target.toordinal()
            if today <= now.toordinal():
                return False
            scanned = int(clock.get("scanned", now.toordinal() - 1))
            await self._wake(partition, target, scanned)
            self.store[clock_key] = orjson.dumps(
                {
                    "max": clock["max"],
                    "scanned": max(scanned, today - 1),
                    "floor": target.isoformat(),
                }
            )
            return True

    async def _wake(self, partition: int, now: datetime, scanned: int) -> None:
        """Wake the partition's customers due on a day before `now`'s, when it passed a day
        not yet scanned."""
        today = now.toordinal()
        if today > scanned + 1:
            for customer_id in self.calendar.take(partition, before=today):
                state = self.load(customer_id)
                if state is None:
                    continue
                outputs = advance(state, now, self.rules)
                await self.publish(outputs)
                self._save(state, partition, today - 1)

    async def _handle(self, event: AccountEvent, partition: int, offset: int | None) -> Processed:
        clock_key = _CLOCK.format(partition=partition)
        clock = orjson.loads(self.store.get(clock_key) or b"{}")
        newest = event.occurred_at
        if "max" in clock:
            newest = max(newest, datetime.fromisoformat(clock["max"]))
        now = newest - self.lateness
        # The clock it followed while idle, as long as its own is behind it.
        floor = clock.get("floor")
        if floor is not None and datetime.fromisoformat(floor) > now:
            now = datetime.fromisoformat(floor)
        else:
            floor = None
        scanned = int(clock.get("scanned", now.toordinal() - 1))

        outcome = apply_event(
            self.load(event.customer_id),
            event,
            now,
            self.rules,
            pseudonyms(event, self.secret),
            owned=True,
            position=None if offset is None else (partition, offset),
        )
        if not outcome.duplicate:
            # Outputs are delivered before the state that remembers the event: a crash in between
            # replays the event rather than losing them (consumers dedupe by event_id).
            await self.publish(outcome.outputs)
            self._save(outcome.state, partition, scanned)

        today = now.toordinal()
        await self._wake(partition, now, scanned)

        # Written at every event, even unchanged: a batch writes it once, at its last write,
        # which must come after every state of the batch (above).
        written = {"max": newest.isoformat(), "scanned": max(scanned, today - 1)}
        if floor is not None:
            written["floor"] = floor
        self.store[clock_key] = orjson.dumps(written)
        late = event.occurred_at < now
        return Processed(
            duplicate=outcome.duplicate,
            late=late,
            lag_seconds=max((now - event.occurred_at).total_seconds(), 0.0),
        )
