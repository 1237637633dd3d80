"""The wait for profile facts (services/notify/agents.py, `ProfileClock`) against a stand-in of
the faust consumer: it waits until the partition holding the customer's facts is taken past the
event's time, for a lead's referrer's tier until the lifecycle group has taken the input, and
gives the batch up when a rebalance begins meanwhile (faust's rebalance waits for the batch, and
the batch for partitions the rebalance has stopped)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from schemas.referral import LeadType
from schemas.topics import ACCOUNT_EVENTS, STAGE_CHANGED
from services.notify.agents import ProfileClock, partition_of
from services.runtime.app import BatchAbandoned
from services.runtime.faust_fixes import HandledOffsets
from tests.unit.notify.test_rules import lead

PARTITIONS = 6
AT = datetime(2026, 3, 1, 9, tzinfo=UTC)
LATER = AT + timedelta(seconds=1)


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
        self.ends: dict[TP, int] = {}

    def topic_partitions(self, topic: str) -> int | None:
        return self.faust_partitions

    def assignment(self) -> set[TP]:
        return self.assigned

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends.get(tp, 100) for tp in tps}


class Lifecycle:
    """What the lifecycle group has committed of the input."""

    def __init__(self) -> None:
        self.offsets: dict[TP, int] = {}

    async def committed(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: self.offsets[tp] for tp in tps if tp in self.offsets}


def clock(
    consumer: Consumer, rebalancing: bool = False, lifecycle: Lifecycle | None = None
) -> ProfileClock:
    async def start_of(tp: TP) -> int:
        return 0  # nothing committed: the facts are not in

    app = SimpleNamespace(consumer=consumer, rebalancing=rebalancing)
    app.rapport_handled = handled = HandledOffsets(app)
    handled.start_of = start_of  # type: ignore[method-assign]
    committed = (lifecycle or Lifecycle()).committed
    return ProfileClock(app, wait_seconds=5, lifecycle_committed=committed)  # type: ignore[arg-type]


def an_event(customer_id: str = "C000001") -> Any:
    # Any event but a lead, a referral or a churn signal reads its own customer's profile.
    return SimpleNamespace(customer_id=customer_id, occurred_at=AT)


def facts_partition(customer_id: str = "C000001", topic: str = ACCOUNT_EVENTS.name) -> TP:
    return TP(topic, partition_of(customer_id.encode(), PARTITIONS))


def taken(tp: TP, at: datetime) -> list[tuple[Any, Any]]:
    return [(SimpleNamespace(occurred_at=at), SimpleNamespace(tp=tp))]


async def test_an_event_whose_facts_are_taken_does_not_wait() -> None:
    profiles = clock(Consumer(PARTITIONS, PARTITIONS))
    profiles.took(taken(facts_partition(), LATER))
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
    # Another customer's fact of the same time says nothing of this customer's.
    profiles.took(taken(facts_partition(), AT))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    profiles.took(taken(facts_partition(), LATER))
    await asyncio.wait_for(waiting, timeout=1)


async def test_a_leads_referrers_tier_waits_for_the_lifecycle_group_to_take_the_input() -> None:
    """The stage-change partition's end is reached, but lifecycle has not yet made the stage
    changes of the input before the lead (it may lag the referral group): the wait goes on
    until it has, then to the stage-change partition's new end."""
    # A lead's task reads its referrer's tier: stage changes, made by lifecycle from the input.
    a_lead = lead(LeadType.RETAIL)
    facts = facts_partition(a_lead.suggested_referrer)
    stages = facts_partition(a_lead.suggested_referrer, STAGE_CHANGED.name)
    consumer = Consumer(PARTITIONS, PARTITIONS)
    consumer.assigned = {facts, stages}
    consumer.ends = {facts: 40, stages: 7}
    lifecycle = Lifecycle()
    profiles = clock(consumer, lifecycle=lifecycle)
    profiles.handled.done = {facts: 40, stages: 7}
    waiting = asyncio.create_task(profiles.wait_for([a_lead]))
    await asyncio.sleep(0.4)
    assert not waiting.done()
    consumer.ends[stages] = 9  # lifecycle made the referrer's stage change, then committed
    lifecycle.offsets[facts] = 40
    await asyncio.sleep(0.4)
    assert not waiting.done()  # the new stage change is not taken yet
    profiles.handled.done[stages] = 9
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


async def test_a_quiet_facts_partition_counts_as_taken_whatever_the_other_partitions_do() -> None:
    """The pilot's high-net-worth case: the customer's partition is idle (taken to its end,
    its last fact older than the event), every other partition far behind. The wait asks
    nothing of them: the retention task is decided at once."""
    facts = facts_partition()
    others = {TP(ACCOUNT_EVENTS.name, p) for p in range(PARTITIONS)} - {facts}
    consumer = Consumer(PARTITIONS, PARTITIONS)
    consumer.assigned = {facts} | others
    consumer.ends = {facts: 12} | dict.fromkeys(others, 5000)
    profiles = clock(consumer)
    profiles.handled.done = {facts: 12} | dict.fromkeys(others, 3)
    profiles.took(taken(facts, AT - timedelta(days=40)))
    await asyncio.wait_for(profiles.wait_for([an_event()]), timeout=1)
