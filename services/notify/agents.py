"""Faust adapter of the notify service: one agent per input topic, each handing events to the
SQL store and publishing what it decided. The store is the state: no faust table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import faust
import httpx
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
from services.notify import metrics, store
from services.notify.config import SERVICE, NotifySettings
from services.notify.delivery import deliver
from services.runtime import tracing
from services.runtime.app import consume, create_app, raw_topic, send_all
from services.runtime.codec import (
    Rejection,
    RejectReason,
    decode_account_event,
    encode,
    model_decoder,
)
from services.runtime.deadletter import DeadLetters
from services.runtime.settings import RuntimeSettings


class Notify:
    """The handler the runtime calls, over the store."""

    def __init__(self, app: faust.App, config: NotifySettings, settings: RuntimeSettings) -> None:
        self.rules = config.rules()
        self.url = settings.resolved_database_url
        self.notifications = raw_topic(app, NOTIFICATIONS)
        self.tasks = raw_topic(app, RM_TASKS)

    async def on_account_events(self, taken: list[tuple[Any, Any]]) -> list[Exception | None]:
        # Of the account events, only profile changes (locale, time zone, RM, consent) matter.
        changes = [i for i, (event, _) in enumerate(taken) if isinstance(event, CustomerUpdated)]
        failures: list[Exception | None] = [None] * len(taken)
        if changes:
            outcome = await self.on_events([taken[i] for i in changes])
            for i, failure in zip(changes, outcome, strict=True):
                failures[i] = failure
        return failures

    async def on_events(self, taken: list[tuple[Any, Any]]) -> list[Exception | None]:
        """A batch of events in one transaction; their outputs are sent after its commit (a
        crash in between re-sends the same outputs on redelivery: the store keeps them with
        the event, and consumers dedupe by event_id)."""
        results = await asyncio.to_thread(
            store.apply_all, self.url, [event for event, _ in taken], self.rules, datetime.now(UTC)
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
                store.record_delivery,
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
