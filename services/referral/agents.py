"""Faust adapter of the referral service: two changelogged tables (customers, counterparties),
three agents (account events, links, steps), outputs to the referral topic, and the read model
written in batches beside the stream."""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import timedelta
from typing import Any

import faust
from pydantic import TypeAdapter

from schemas.account_events import AccountEvent
from schemas.referral import LeadChanged
from schemas.topics import ACCOUNT_EVENTS, REFERRAL_EVENTS
from services.referral import metrics, read_model
from services.referral.config import SERVICE, ReferralSettings, internal_topics, topics_to_create
from services.referral.domain import CodeGrant, Link
from services.referral.service import Ports, ReferralOutput, ReferralService
from services.referral.steps import LinkRecord, Step, StepMark, Watermark
from services.runtime.app import consume, create_app, raw_topic, send_all, staging_of
from services.runtime.codec import decode_account_event, encode, model_decoder
from services.runtime.idle import IdlePartitions, watch_idle
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics

log = logging.getLogger(__name__)


class Referral:
    """The tables and topics of one referral worker, and the handlers the runtime calls."""

    def __init__(
        self,
        app: faust.App,
        config: ReferralSettings,
        settings: RuntimeSettings,
    ) -> None:
        staging = staging_of(app)
        self.customers = staging.table(
            app.Table("referral-customers", default=None, key_type=str, value_type=bytes)
        )
        self.counterparties = staging.table(
            app.Table("referral-counterparties", default=None, key_type=str, value_type=bytes)
        )
        self.links_spec, self.steps_spec = internal_topics(settings)
        self.output_topic = raw_topic(app, REFERRAL_EVENTS)
        self.links_topic = raw_topic(app, self.links_spec)
        self.steps_topic = raw_topic(app, self.steps_spec)
        self.database_url = settings.resolved_database_url
        self.service = ReferralService(
            self.customers,
            self.counterparties,
            Ports(
                self._publish,
                self._send_links,
                self._broadcast_watermark,
                self._send_steps,
                self._broadcast_mark,
                self._lookup_code,
            ),
            config.rules(),
            config.pseudonym_key.encode(),
            sources=settings.topic_partitions,
            lateness=timedelta(hours=config.allowed_lateness_hours),
        )
        self.partitions = settings.topic_partitions

    async def _publish(self, outputs: list[ReferralOutput]) -> None:
        await send_all(
            (
                self.output_topic,
                (o.counterparty_key if isinstance(o, LeadChanged) else o.referral_id).encode(),
                encode(o),
                None,
            )
            for o in outputs
        )
        for output in outputs:
            metrics.record(output)

    async def _send_links(self, links: list[Link]) -> None:
        await send_all(
            (self.links_topic, item.counterparty_key.encode(), encode(LinkRecord(link=item)), None)
            for item in links
        )

    async def _broadcast_watermark(self, mark: Watermark) -> None:
        value = encode(LinkRecord(watermark=mark))
        await send_all(
            (self.links_topic, b"#watermark", value, partition)
            for partition in range(self.partitions)
        )

    async def _send_steps(self, steps: list[Step]) -> None:
        await send_all(
            (self.steps_topic, step.customer_id.encode(), encode(step), None) for step in steps
        )

    async def _broadcast_mark(self, mark: StepMark) -> None:
        value = encode(Step(mark=mark))
        await send_all(
            (self.steps_topic, b"#mark", value, partition) for partition in range(self.partitions)
        )

    async def _lookup_code(self, code: str) -> CodeGrant | None:
        return await asyncio.to_thread(read_model.find_code, self.database_url, code)

    async def on_account_event(self, event: AccountEvent, message: Any) -> None:
        await self.service.handle_account_event(event, message.partition, message.offset)

    async def on_link(self, record: LinkRecord, message: Any) -> None:
        await self.service.handle_link_record(record, message.partition)

    async def on_step(self, step: Step, message: Any) -> None:
        await self.service.handle_step(step, message.partition)

    async def on_idle_check(self, idle: IdlePartitions, found: list[int]) -> None:
        """Each input partition of this worker found idle is announced once (its marks);
        one whose marks could not go out is checked again."""
        for partition in found:
            announced = False
            try:
                announced = await self.service.announce_idle(
                    partition, functools.partial(idle.is_idle, partition)
                )
            finally:
                if not announced:
                    idle.discard(partition)

    async def on_rebalance(self, sender: Any, /, *_: Any, **__: Any) -> None:
        """Partitions may have moved: the first batch of each sends its mark again, so that
        receivers count again a partition another worker announced idle."""
        self.service.counted.clear()

    async def write_read_model(self) -> None:
        """Write the referrals and leads changed since the last call, in a thread."""
        changed, self.service.changed = self.service.changed, []
        if not changed:
            return
        try:
            await asyncio.to_thread(read_model.write, self.database_url, changed)
        except Exception:
            # The stream goes on; these rows are retried with the next batch.
            self.service.changed[:0] = changed
            metrics.READ_MODEL_FAILURES.inc()
            log.exception("referral read model write failed; will retry")


def build_app(settings: RuntimeSettings) -> faust.App:
    """The referral worker's faust app with its agents and read-model timer."""
    config = ReferralSettings()
    app = create_app(SERVICE, settings)
    # Created before the consumer subscribes: a topic missing then is ignored by faust until
    # the next rebalance, and its records would wait.
    asyncio.run(create_topics(settings, specs=topics_to_create(settings)))
    referral = Referral(app, config, settings)
    # mypy cannot solve T through the Annotated union of event models.
    consume(  # type: ignore[misc]
        app,
        SERVICE,
        ACCOUNT_EVENTS,
        decode_account_event,
        referral.on_account_event,
        label=lambda e: str(e.event_type),
        batched=True,
        after_batch=referral.service.advance_source,
    )
    consume(
        app,
        SERVICE,
        referral.links_spec,
        model_decoder(TypeAdapter(LinkRecord)),
        referral.on_link,
        label=lambda r: "link" if r.link is not None else "watermark",
        batched=True,
    )
    consume(
        app,
        SERVICE,
        referral.steps_spec,
        model_decoder(TypeAdapter(Step)),
        referral.on_step,
        label=_step_kind,
        batched=True,
    )
    app.on_partitions_revoked.connect(referral.on_rebalance)
    app.on_partitions_assigned.connect(referral.on_rebalance)
    watch_idle(app, ACCOUNT_EVENTS.name, settings.idle_partition_seconds, referral.on_idle_check)
    app.timer(interval=config.read_model_interval_seconds)(referral.write_read_model)
    return app


def _step_kind(step: Step) -> str:
    return step.kind
