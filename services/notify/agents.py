"""Faust adapter of the notify service: one agent per input topic, each handing events to the
SQL store and publishing what it decided. The store is the state: no faust table."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
import httpx
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition
from faust.types import TP
from pydantic import TypeAdapter

from schemas.account_events import CustomerUpdated
from schemas.lifecycle import MILESTONE_ADAPTER, ChurnSignalChanged, StageChanged
from schemas.notify import NotificationChanged, RmTaskChanged
from schemas.referral import REFERRAL_EVENT_ADAPTER
from schemas.rewards import LEDGER_ENTRY_ADAPTER
from schemas.topics import (
    ACCOUNT_EVENTS,
    CHURN_SIGNALS,
    MILESTONES,
    NOTIFICATIONS,
    REFERRAL_EVENTS,
    REWARDS_LEDGER,
    RM_TASKS,
    STAGE_CHANGED,
    TopicSpec,
)
from services.notify import metrics, service
from services.notify.config import SERVICE, NotifySettings
from services.notify.delivery import deliver
from services.notify.domain import profiles_read
from services.runtime import tracing
from services.runtime.app import BatchAbandoned, consume, create_app, raw_topic, send_all
from services.runtime.codec import (
    Rejection,
    RejectReason,
    decode_account_event,
    encode,
    model_decoder,
)
from services.runtime.deadletter import DeadLetters
from services.runtime.faust_fixes import HandledOffsets
from services.runtime.kafka_security import client_options
from services.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How often a wait asks the broker how far the lifecycle group has committed.
_LIFECYCLE_POLL_SECONDS = 0.25

# The offsets a consumer group has committed on these partitions (0 where it has none).
Committed = Callable[[list[TP]], Awaitable[dict[TP, int]]]


class LifecycleProgress:
    """How far the lifecycle workers' group has committed the input. They commit an offset only
    once the stage changes made from the records before it are in their topic."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.group = settings.app_id("lifecycle")
        self.bootstrap = settings.bootstrap_list
        self.admin: AIOKafkaAdminClient | None = None

    async def committed(self, tps: list[TP]) -> dict[TP, int]:
        try:
            if self.admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **client_options())
                await admin.start()
                self.admin = admin
            offsets = await self.admin.list_consumer_group_offsets(
                self.group, partitions=[TopicPartition(tp.topic, tp.partition) for tp in tps]
            )
        except Exception as exc:
            # Taken for nothing committed: the wait goes on, bounded by PROFILE_WAIT_SECONDS.
            log.warning("could not read the lifecycle group's offsets: %s", exc)
            return {}
        return {TP(tp.topic, tp.partition): max(meta.offset, 0) for tp, meta in offsets.items()}


class ProfileClock:
    """How far this worker has taken the topics profiles come from (the input's
    `customer.updated`, and the stage changes that set the tier), per partition. An event is
    decided once the facts before it are in: the partition holding its customer's facts was
    taken past the event's time, or to its end. With the profile read as of the event's time
    (`profile_as_of`), notify then decides the same whichever of its six topics it takes
    first, and a replay decides as a live run did (docs/notify.md).

    A tier is a fact another service makes: a stage-change partition's end says nothing until
    the lifecycle group has taken the input that far (`lifecycle_committed`): it may lag the
    referral group, whose lead is waiting."""

    def __init__(self, app: faust.App, wait_seconds: float, lifecycle_committed: Committed) -> None:
        self.app = app
        self.handled: HandledOffsets = app.rapport_handled  # type: ignore[attr-defined]
        self.wait_seconds = wait_seconds
        self.lifecycle_committed = lifecycle_committed
        self.taken_until: dict[TP, datetime] = {}
        self.partition_counts: dict[str, int] = {}

    def took(self, taken: list[tuple[Any, Any]]) -> None:
        """Events of these messages are stored."""
        for event, message in taken:
            at = getattr(event, "occurred_at", None)
            if at is not None and at > self.taken_until.get(message.tp, _EPOCH):
                self.taken_until[message.tp] = at
        self.handled.wake()

    def _partitions(self, topic: str) -> int | None:
        """The topic's partition count, once known (kept: it does not change under keyed
        topics). faust's own answer is empty while the group rebalances: the cluster metadata
        of the consumer's client is asked then."""
        count = self.partition_counts.get(topic)
        if count is None:
            consumer = self.app.consumer
            client = consumer._thread._ensure_consumer()._client  # type: ignore[attr-defined]
            count = consumer.topic_partitions(topic) or len(
                client.cluster.partitions_for_topic(topic) or ()
            )
            if count:
                self.partition_counts[topic] = count
        return count or None

    def _needed(self, events: list[Any]) -> tuple[dict[TP, datetime], dict[TP, set[TP]]] | None:
        """Per partition holding profile facts these events read, the latest event time; and
        per stage-change partition among them, the input partitions its facts are made from.
        None while a partition count is not known yet."""
        needed: dict[TP, datetime] = {}
        made_from: dict[TP, set[TP]] = {}
        for event in events:
            for customer_id, tier in profiles_read(event):
                tps = []
                for topic in (ACCOUNT_EVENTS, STAGE_CHANGED) if tier else (ACCOUNT_EVENTS,):
                    partitions = self._partitions(topic.name)
                    if partitions is None:
                        return None
                    tps.append(TP(topic.name, partition_of(customer_id.encode(), partitions)))
                for tp in tps:
                    if event.occurred_at > needed.get(tp, _EPOCH):
                        needed[tp] = event.occurred_at
                if tier:
                    made_from.setdefault(tps[1], set()).add(tps[0])
        return needed, made_from

    def _taken_past(self, tp: TP, at: datetime) -> bool:
        # Past, not up to: many events share one time (the input's, and the stage changes made
        # from it), and one of them taken does not mean the customer's was.
        return self.taken_until.get(tp, _EPOCH) > at

    def _stop_if_rebalancing(self) -> None:
        # The rebalance stops the partitions whose facts are awaited and waits for this batch
        # to end: waiting on would hold both up until the wait times out.
        if self.app.rebalancing:
            metrics.PROFILE_WAITS.labels("abandoned").inc()
            raise BatchAbandoned("the group is rebalancing while it waits for profile facts")

    async def wait_for(self, events: list[Any]) -> None:
        """Until the profile facts these events read are taken (or the wait times out)."""
        consumer = self.app.consumer
        deadline = time.monotonic() + self.wait_seconds
        while (found := self._needed(events)) is None:
            self._stop_if_rebalancing()
            if time.monotonic() > deadline:
                log.warning("deciding without the profile facts: the partition counts are unknown")
                metrics.PROFILE_WAITS.labels("timed_out").inc()
                return
            await asyncio.sleep(0.1)
        needed, made_from = found
        pending = {tp: at for tp, at in needed.items() if not self._taken_past(tp, at)}
        if not pending:
            return
        # The facts before these events are in the log by now: the partitions' ends. Those of
        # a stage-change partition are known once lifecycle has taken its inputs' ends.
        ends = dict(await consumer.highwaters(*pending))
        made = {tp: made_from[tp] for tp in pending if tp in made_from}
        inputs = {tp for sources in made.values() for tp in sources}
        input_ends = await consumer.highwaters(*inputs) if inputs else {}
        asked = 0.0
        while pending:
            if made and time.monotonic() - asked >= _LIFECYCLE_POLL_SECONDS:
                asked = time.monotonic()
                committed = await self.lifecycle_committed(sorted(inputs))
                for tp, sources in list(made.items()):
                    if all(committed.get(i, 0) >= input_ends[i] for i in sources):
                        del made[tp]
                        ends[tp] = (await consumer.highwaters(tp))[tp]
            assigned = consumer.assignment()
            for tp, at in list(pending.items()):
                if self._taken_past(tp, at):
                    del pending[tp]
                    continue
                if tp in made:
                    continue
                if tp in assigned:
                    done = self.handled.done.get(tp)
                    if done is None:
                        done = await self.handled.start_of(tp)
                    taken = done >= ends[tp]
                else:
                    # Another worker takes it: wait until its group has committed that far.
                    taken = await self.handled.start_of(tp) >= ends[tp]
                if taken:
                    del pending[tp]
            if pending and time.monotonic() > deadline:
                log.warning("deciding without the profile facts of %s: not taken in time", pending)
                metrics.PROFILE_WAITS.labels("timed_out").inc()
                return
            if pending:
                self._stop_if_rebalancing()
                if pending.keys() <= assigned:
                    # This worker moves them: woken by its progress (a 50 ms poll had been
                    # a large part of a quiet feed's time to a notification).
                    await self.handled.progress(_LIFECYCLE_POLL_SECONDS if made else 0.5)
                else:
                    # Another worker's group, asked of the broker: not at every record.
                    await asyncio.sleep(0.5)
        metrics.PROFILE_WAITS.labels("taken").inc()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client and aiokafka
    use) gives a key."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class Notify:
    """The handler the runtime calls, over the store."""

    def __init__(self, app: faust.App, config: NotifySettings, settings: RuntimeSettings) -> None:
        self.rules = config.rules()
        self.url = settings.resolved_database_url
        self.notifications = raw_topic(app, NOTIFICATIONS)
        self.tasks = raw_topic(app, RM_TASKS)
        self.clock = ProfileClock(
            app, config.profile_wait_seconds, LifecycleProgress(settings).committed
        )

    async def on_account_events(self, taken: list[tuple[Any, Any]]) -> list[Exception | None]:
        # Of the account events, only profile changes (locale, time zone, RM, consent) matter.
        changes = [i for i, (event, _) in enumerate(taken) if isinstance(event, CustomerUpdated)]
        failures: list[Exception | None] = [None] * len(taken)
        if changes:
            outcome = await self._decide([taken[i] for i in changes])
            for i, failure in zip(changes, outcome, strict=True):
                failures[i] = failure
        self.clock.took(taken)
        return failures

    async def on_events(self, taken: list[tuple[Any, Any]]) -> list[Exception | None]:
        """Events of the other services, once the profile facts before them are in."""
        await self.clock.wait_for([event for event, _ in taken])
        failures = await self._decide(taken)
        self.clock.took(taken)
        return failures

    async def _decide(self, taken: list[tuple[Any, Any]]) -> list[Exception | None]:
        """A batch of events in one transaction; their outputs are sent after its commit (a
        crash in between re-sends the same outputs on redelivery: the store keeps them with
        the event, and consumers dedupe by event_id)."""
        results = await asyncio.to_thread(
            service.apply_all,
            self.url,
            [event for event, _ in taken],
            self.rules,
            datetime.now(UTC),
        )
        for (_, message), result in zip(taken, results, strict=True):
            if isinstance(result, Exception):
                continue
            # Each event's outputs continue its trace.
            with tracing.handling(message):
                await send_all(
                    (
                        (self.tasks, o.task_id.encode(), encode(o), None)
                        if isinstance(o, RmTaskChanged)
                        else (self.notifications, o.customer_id.encode(), encode(o), None)
                    )
                    for o in result
                )
            for output in result:
                metrics.record(output)
        return [result if isinstance(result, Exception) else None for result in results]


class Webhooks:
    """Delivers scheduled and cancelled notifications to the channels' webhooks."""

    def __init__(self, app: faust.App, config: NotifySettings, settings: RuntimeSettings) -> None:
        self.config = config
        self.urls = config.webhook_urls()
        self.secret = (config.webhook_secret or "").encode()
        self.url = settings.resolved_database_url
        self.client = httpx.AsyncClient(timeout=config.webhook_timeout_seconds)
        self.dead_letters = DeadLetters(app, SERVICE)

    async def on_notification(self, event: NotificationChanged, message: Any) -> None:
        if event.type == "notification.suppressed" or event.channel not in self.urls:
            return
        result = await deliver(
            self.client,
            self.urls[event.channel],
            self.secret,
            message.value,
            event.event_id,
            self.config.webhook_attempts,
            self.config.webhook_backoff_seconds,
            self.config.webhook_backoff_max_seconds,
        )
        metrics.DELIVERIES.labels(event.channel.value, result.status).inc()
        if event.type == "notification.scheduled":
            await asyncio.to_thread(
                service.record_delivery,
                self.url,
                event.notification_id,
                result.status,
                result.attempts,
                result.error,
            )
        if result.status == "failed":
            # Kept with the reason, for an operator to replay once the receiver is fixed.
            await self.dead_letters.send(
                message,
                Rejection(
                    RejectReason.DELIVERY_FAILED,
                    f"the {event.channel.value} webhook did not take it after "
                    f"{result.attempts} attempts: {result.error}",
                ),
            )


def build_app(settings: RuntimeSettings) -> faust.App:
    """The notify worker's faust app."""
    config = NotifySettings()
    app = create_app(SERVICE, settings)
    notify = Notify(app, config, settings)
    consume(
        app,
        SERVICE,
        ACCOUNT_EVENTS,
        decode_account_event,
        handle_batch=notify.on_account_events,
        label=lambda e: str(e.event_type),
    )
    inputs: list[tuple[TopicSpec, TypeAdapter[Any]]] = [
        (STAGE_CHANGED, TypeAdapter(StageChanged)),
        (CHURN_SIGNALS, TypeAdapter(ChurnSignalChanged)),
        (MILESTONES, MILESTONE_ADAPTER),
        (REFERRAL_EVENTS, REFERRAL_EVENT_ADAPTER),
        (REWARDS_LEDGER, LEDGER_ENTRY_ADAPTER),
    ]
    for spec, adapter in inputs:
        consume(
            app, SERVICE, spec, model_decoder(adapter), handle_batch=notify.on_events, label=_type
        )
    if config.webhook_urls():
        webhooks = Webhooks(app, config, settings)
        consume(
            app,
            SERVICE,
            NOTIFICATIONS,
            model_decoder(TypeAdapter(NotificationChanged)),
            webhooks.on_notification,
            label=_type,
        )
    return app


def _type(event: Any) -> str:
    return str(event.type)
