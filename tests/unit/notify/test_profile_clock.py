"""The wait for profile facts (services/notify/agents.py, `ProfileClock`) against a stand-in of
the faust consumer: it waits until the partition holding the customer's facts is taken up to the
event's time, and gives the batch up when a rebalance begins meanwhile (faust's rebalance waits
for the batch, and the batch for partitions the rebalance has stopped)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from schemas.topics import ACCOUNT_EVENTS
from services.notify.agents import ProfileClock, partition_of
from services.runtime.app import BatchAbandoned

PARTITIONS = 6
AT = datetime(2026, 3, 1, 9, tzinfo=UTC)


class Consumer:
    """What the wait asks of faust's consumer; `faust_partitions` is what faust answers for a
    topic's partition count (nothing while a rebalance is under way)."""

    def __init__(self, faust_partitions: int | None, cluster_partitions: int | None) -> None:
        self.faust_partitions = faust_partitions
        cluster = SimpleNamespace(
            partitions_for_topic=lambda topic: (
                None if cluster_partitions is None else set(range(cluster_partitions))
            )
        )
        client = SimpleNamespace(_client=SimpleNamespace(cluster=cluster))
        self._thread = SimpleNamespace(_ensure_consumer=lambda: client)
        self.assigned: set[TP] = set()

    def topic_partitions(self, topic: str) -> int | None:
        return self.faust_partitions

    def assignment(self) -> set[TP]:
        return self.assigned

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 100)


def clock(consumer: Consumer, rebalancing: bool = False) -> ProfileClock:
    async def start_of(tp: TP) -> int:
        return 0  # nothing committed: the facts are not in

    handled = SimpleNamespace(done={}, start_of=start_of)
    app = SimpleNamespace(consumer=consumer, rapport_handled=handled, rebalancing=rebalancing)
    return ProfileClock(app, wait_seconds=5)  # type: ignore[arg-type]


def an_event(customer_id: str = "C000001") -> Any:
    # Any event but a lead, a referral or a churn signal reads its own customer's profile.
    return SimpleNamespace(customer_id=customer_id, occurred_at=AT)


def facts_partition(customer_id: str = "C000001") -> TP:
    return TP(ACCOUNT_EVENTS.name, partition_of(customer_id.encode(), PARTITIONS))


def taken(tp: TP, at: datetime) -> list[tuple[Any, Any]]:
    return [(SimpleNamespace(occurred_at=at), SimpleNamespace(tp=tp))]


async def test_an_event_whose_facts_are_taken_does_not_wait() -> None:
    profiles = clock(Consumer(PARTITIONS, PARTITIONS))
    profiles.took(taken(facts_partition(), AT))
    await asyncio.wait_for(profiles.wait_for([an_event()]), timeout=1)


async def waiting_on_its_partition(consumer: Consumer) -> tuple[ProfileClock, asyncio.Task[None]]:
    """A wait for an event whose customer's facts partition this worker holds, under way."""
    consumer.assigned = {facts_partition()}
    profiles = clock(consumer)
    waiting = asyncio.create_task(profiles.wait_for([an_event()]))
    await asyncio.sleep(0.2)
    return profiles, waiting


# faust answers no partition count while the group rebalances: taking that for "no facts to
# wait for" let events through before their customer.updated (docs/reliability.md). The count
# then comes from the client's cluster metadata.
@pytest.mark.parametrize("faust_partitions", [PARTITIONS, None], ids=["faust", "cluster"])
async def test_an_event_waits_until_its_customers_partition_is_taken_to_its_time(
    faust_partitions: int | None,
) -> None:
    profiles, waiting = await waiting_on_its_partition(Consumer(faust_partitions, PARTITIONS))
    assert not waiting.done()
    profiles.took(taken(facts_partition(), AT))
    await asyncio.wait_for(waiting, timeout=1)


async def test_a_rebalance_during_the_wait_gives_the_batch_up() -> None:
    profiles, waiting = await waiting_on_its_partition(Consumer(PARTITIONS, PARTITIONS))
    profiles.app.rebalancing = True
    with pytest.raises(BatchAbandoned):
        await asyncio.wait_for(waiting, timeout=1)


async def test_with_no_partition_count_known_during_a_rebalance_the_batch_is_given_up() -> None:
    profiles = clock(Consumer(None, None), rebalancing=True)
    with pytest.raises(BatchAbandoned):
        await profiles.wait_for([an_event()])
