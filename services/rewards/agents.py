"""Faust adapter of the rewards service: three agents (referral events, stage changes, tenure
anniversaries) that hand each batch of events to the service, and a timer that relays the
outbox. The ledger (SQL) is the state: the worker keeps no table of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import faust
from pydantic import TypeAdapter

from schemas.lifecycle import MILESTONE_ADAPTER, Stage, StageChanged, TenureAnniversary
from schemas.referral import REFERRAL_EVENT_ADAPTER, ReferralChanged
from schemas.topics import MILESTONES, REFERRAL_EVENTS, REWARDS_LEDGER, STAGE_CHANGED, TopicSpec
from services.rewards import ledger, metrics, service
from services.rewards.config import SERVICE, RewardsSettings
from services.rewards.outbox import OutboxRelay
from services.runtime import tracing
from services.runtime.app import consume, create_app
from services.runtime.codec import model_decoder
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics

log = logging.getLogger(__name__)


class Rewards:
    """The handlers the runtime calls, over the ledger."""

    def __init__(self, config: RewardsSettings, settings: RuntimeSettings) -> None:
        self.rules = config.rules()
        self.url = settings.resolved_database_url
        # Set when entries were booked: the relay looks at once instead of waiting its turn.
        self.booked = asyncio.Event()

    async def on_events(self, taken: list[tuple[Any, Any]]) -> list[Exception | None]:
        """A batch of events in one ledger transaction; the others (lead events, birthdays,
        stage changes other than entering maturity) earn nothing and cost no transaction."""
        due = [(n, event, message) for n, (event, message) in enumerate(taken) if _earns(event)]
        if not due:
            return [None] * len(taken)
        traced = []
        for _, event, message in due:
            # Each entry is relayed later under the trace of the record that caused it.
            with tracing.handling(message):
                traced.append((event, tracing.current_traceparent()))
        results = await asyncio.to_thread(
            service.apply_all, self.url, traced, self.rules, ledger.utcnow()
        )
        failures: list[Exception | None] = [None] * len(taken)
        for (n, _, _), applied in zip(due, results, strict=True):
            if isinstance(applied, Exception):
                failures[n] = applied
            elif applied.duplicate:
                metrics.DUPLICATES.inc()
            else:
                for entry in applied.entries or []:
                    metrics.record(entry)
                if applied.entries:
                    self.booked.set()
                for reason, points in applied.withheld or []:
                    metrics.WITHHELD.labels(reason).inc(points)
        return failures


def _earns(event: Any) -> bool:
    """Only referral events, entering maturity and tenure anniversaries can earn a reward."""
    if isinstance(event, StageChanged):
        return event.type == "stage.changed" and event.stage is Stage.MATURITY
    return isinstance(event, ReferralChanged | TenureAnniversary)


def build_app(settings: RuntimeSettings) -> faust.App:
    """The rewards worker's faust app: its agents and the outbox relay."""
    config = RewardsSettings()
    app = create_app(SERVICE, settings)
    # The relay asks the ledger topic for its partitions: it must exist before the first entry.
    asyncio.run(create_topics(settings, specs=(REWARDS_LEDGER,)))
    rewards = Rewards(config, settings)
    inputs: list[tuple[TopicSpec, TypeAdapter[Any]]] = [
        (REFERRAL_EVENTS, REFERRAL_EVENT_ADAPTER),
        (STAGE_CHANGED, TypeAdapter(StageChanged)),
        (MILESTONES, MILESTONE_ADAPTER),
    ]
    for spec, adapter in inputs:
        consume(
            app, SERVICE, spec, model_decoder(adapter), handle_batch=rewards.on_events, label=_type
        )
    relay = OutboxRelay(
        settings.resolved_database_url,
        settings.bootstrap_list,
        REWARDS_LEDGER.name,
        config.relay_lease_seconds,
        config.relay_batch,
    )

    async def publish_outbox() -> None:
        # Wakes when this worker booked something, and at least every relay_interval_seconds
        # (entries booked by another worker or the API, or a lease to take over).
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rewards.booked.wait(), config.relay_interval_seconds)
            rewards.booked.clear()
            while await relay.run_once() == config.relay_batch:
                pass  # a full batch: more may wait

    app.task(publish_outbox)

    return app


def _type(event: Any) -> str:
    return str(event.type)
