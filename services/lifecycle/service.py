"""The lifecycle service layer: the events of one input partition through the rules, with the
partition's own event-time clock and a calendar of customer deadlines, over a plain key-value
store (a changelogged faust table in the worker, a dict in the tests).

Everything of a partition lives in one store under three kinds of key, so that its changelog is a
single ordered log: a crash keeps a prefix of the writes, never a later write without an earlier
one. The order of writes within an event is chosen so that any prefix replays correctly:

    customer states  ->  their deadlines  ->  emptied calendar days  ->  the clock

The clock only says how far the partition was taken: a clock older than the writes before it
is what a crash just before its write leaves, and replays correctly. So a batch of events writes
only its last clock (`is_clock_key`, `Staging.table(latest_only=...)`): one changelog record per
partition and batch instead of one per event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from schemas.account_events import AccountEvent, TransferIn, TransferOut
from services.lifecycle.domain import (
    CustomerState,
    LifecycleRules,
    Output,
    advance,
    apply_event,
    next_deadline,
)
from services.runtime.pseudonym import counterparty_key

Store = MutableMapping[str, bytes]
Publish = Callable[[list[Output]], Awaitable[None]]

# Customer ids start with a letter or digit (schemas.account_events), so "#" never collides.
_CLOCK = "#clock:{partition}"
_DUE = "#due:{partition}:{day}"


def is_clock_key(key: str) -> bool:
    """Whether a store key holds a partition's clock."""
    return key.startswith("#clock:")


def is_customer_key(key: str) -> bool:
    """Whether a store key holds a customer's state (not a clock or a calendar day)."""
    return not key.startswith("#")


def transfer_counterparty_key(event: AccountEvent, secret: bytes) -> str | None:
    """A keyed pseudonym of a transfer's counterparty (never its raw account number)."""
    if not isinstance(event, TransferIn | TransferOut):
        return None
    return counterparty_key(event.counterparty.bank_code, event.counterparty.account, secret)


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

    def load(self, customer_id: str) -> CustomerState | None:
        """A customer's state, or None for a customer never seen."""
        raw = self.store.get(customer_id)
        return None if raw is None else CustomerState.model_validate_json(raw)

    def customer_ids(self) -> Iterator[str]:
        """Every customer in the store."""
        return (key for key in list(self.store) if is_customer_key(key))

    def _schedule(self, state: CustomerState, partition: int, scanned: int) -> None:
        due = next_deadline(state, self.rules)
        if due is None:
            return
        # A deadline on a day the clock already passed is handled on the next day it scans.
        key = _DUE.format(partition=partition, day=max(due.toordinal(), scanned + 1))
        bucket = orjson.loads(self.store.get(key) or b"[]")
        if state.customer_id not in bucket:
            bucket.append(state.customer_id)
            self.store[key] = orjson.dumps(bucket)

    def _save(self, state: CustomerState, partition: int, scanned: int) -> None:
        state.version += 1
        self.store[state.customer_id] = state.model_dump_json().encode()
        self.changed.add(state.customer_id)
        self._schedule(state, partition, scanned)

    async def handle(self, event: AccountEvent, partition: int) -> Processed:
        """Apply one event, then wake the customers whose deadlines the clock has passed."""
        clock_key = _CLOCK.format(partition=partition)
        clock = orjson.loads(self.store.get(clock_key) or b"{}")
        newest = event.occurred_at
        if "max" in clock:
            newest = max(newest, datetime.fromisoformat(clock["max"]))
        now = newest - self.lateness
        scanned = int(clock.get("scanned", now.toordinal() - 1))

        outcome = apply_event(
            self.load(event.customer_id),
            event,
            now,
            self.rules,
            transfer_counterparty_key(event, self.secret),
            owned=True,
        )
        if outcome.duplicate:
            # Its state may have been stored just before a crash and its deadline not: schedule
            # again (a no-op when it is there).
            self._schedule(outcome.state, partition, scanned)
        else:
            # Outputs are delivered before the state that remembers the event: a crash in between
            # replays the event rather than losing them (consumers dedupe by event_id).
            await self.publish(outcome.outputs)
            self._save(outcome.state, partition, scanned)

        today = now.toordinal()
        for day in range(scanned + 1, today):
            bucket_key = _DUE.format(partition=partition, day=day)
            bucket = self.store.get(bucket_key)
            if bucket is None:
                continue
            for customer_id in orjson.loads(bucket):
                state = self.load(customer_id)
                if state is None:
                    continue
                outputs = advance(state, now, self.rules)
                await self.publish(outputs)
                self._save(state, partition, today - 1)
            # Emptied only after its customers are saved: a crash before this wakes them again.
            del self.store[bucket_key]

        updated = {"max": newest.isoformat(), "scanned": max(scanned, today - 1)}
        if updated != clock:
            self.store[clock_key] = orjson.dumps(updated)
        late = event.occurred_at < now
        return Processed(
            duplicate=outcome.duplicate,
            late=late,
            lag_seconds=max((now - event.occurred_at).total_seconds(), 0.0),
        )
