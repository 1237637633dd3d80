"""Faust adapter of the referral service: two changelogged tables (customers, counterparties),
three agents (account events, links, steps), outputs to the referral topic, and the read model
written in batches beside the stream."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, TypeVar

import faust
from pydantic import BaseModel, TypeAdapter

from schemas.account_events import AccountEvent
from schemas.topics import ACCOUNT_EVENTS, REFERRAL_EVENTS, TopicSpec
from services.referral import metrics, read_model
from services.referral.config import ReferralSettings
from services.referral.domain import CodeGrant, Link
from services.referral.service import (
    LinkRecord,
    Ports,
    ReferralOutput,
    ReferralService,
    Step,
    Watermark,
)
from services.runtime.app import consume, create_app, raw_topic
from services.runtime.codec import Rejection, decode_account_event, decode_model, encode
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics

SERVICE = "referral"
log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def _decoder(model: type[M]) -> Any:
    adapter = TypeAdapter(model)

    def decode(key: bytes | None, value: bytes | None) -> M | Rejection:
        return decode_model(adapter, value)

    return decode


def internal_topics(settings: RuntimeSettings) -> tuple[TopicSpec, TopicSpec]:
    """The service's own topics between its keyed steps, named after the app (so two stacks on
    one cluster never share them), with the input's partition count (so the customer-keyed one
    is co-partitioned with the input). The worker creates them at start."""
    app_id = settings.app_id(SERVICE)
    links = TopicSpec(
        name=f"{app_id}-links",
        description="Transfers with external accounts, keyed by the counterparty's keyed hash.",
        key="counterparty hash (UTF-8)",
        payload=None,
        producers=(SERVICE,),
        consumers=(SERVICE,),
    )
    steps = TopicSpec(
        name=f"{app_id}-steps",
        description="Chain matches, candidates, decisions and reviews, keyed by customer.",
        key="customer id (UTF-8)",
        payload=None,
        producers=(SERVICE, f"{SERVICE} API (reviews)"),
        consumers=(SERVICE,),
    )
    return links, steps


def _internal_topic(app: faust.App, spec: TopicSpec, partitions: int) -> Any:
    return app.topic(
        spec.name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


class Referral:
    """The tables and topics of one referral worker, and the handlers the runtime calls."""

    def __init__(
        self,
        app: faust.App,
        config: ReferralSettings,
        settings: RuntimeSettings,
    ) -> None:
        self.customers = app.Table(
            "referral-customers", default=None, key_type=str, value_type=bytes
        )
        self.counterparties = app.Table(
            "referral-counterparties", default=None, key_type=str, value_type=bytes
        )
        self.links_spec, self.steps_spec = internal_topics(settings)
        self.output_topic = raw_topic(app, REFERRAL_EVENTS)
        self.links_topic = _internal_topic(app, self.links_spec, settings.topic_partitions)
        self.steps_topic = _internal_topic(app, self.steps_spec, settings.topic_partitions)
        self.database_url = settings.resolved_database_url
        self.service = ReferralService(
            self.customers,
            self.counterparties,
            Ports(
                self._publish,
                self._send_links,
                self._broadcast_watermark,
                self._send_steps,
                self._lookup_code,
            ),
            config.rules(),
            config.pseudonym_key.encode(),
            sources=settings.topic_partitions,
            lateness=timedelta(hours=config.allowed_lateness_hours),
        )
        self.partitions = settings.topic_partitions

    async def _publish(self, outputs: list[ReferralOutput]) -> None:
        for output in outputs:
            key = output.counterparty_key if output.type.startswith("lead.") else output.referral_id  # type: ignore[union-attr]
            await (await self.output_topic.send(key=str(key).encode(), value=encode(output)))
            metrics.record(output)

    async def _send_links(self, links: list[Link]) -> None:
        for item in links:
            value = encode(LinkRecord(link=item))
            await (await self.links_topic.send(key=item.counterparty_key.encode(), value=value))

    async def _broadcast_watermark(self, mark: Watermark) -> None:
        value = encode(LinkRecord(watermark=mark))
        for partition in range(self.partitions):
            await (await self.links_topic.send(key=b"#watermark", value=value, partition=partition))

    async def _send_steps(self, steps: list[Step]) -> None:
        for step in steps:
            await (await self.steps_topic.send(key=step.customer_id.encode(), value=encode(step)))

    async def _lookup_code(self, code: str) -> CodeGrant | None:
        return await asyncio.to_thread(read_model.find_code, self.database_url, code)

    async def on_account_event(self, event: AccountEvent, message: Any) -> None:
        await self.service.handle_account_event(event, message.partition)

    async def on_link(self, record: LinkRecord, message: Any) -> None:
        await self.service.handle_link_record(record, message.partition)

    async def on_step(self, step: Step, message: Any) -> None:
        await self.service.handle_step(step)

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
    asyncio.run(create_topics(settings, specs=internal_topics(settings)))
    referral = Referral(app, config, settings)
    # mypy cannot solve T through the Annotated union of event models.
    consume(  # type: ignore[misc]
        app,
        SERVICE,
        ACCOUNT_EVENTS,
        decode_account_event,
        referral.on_account_event,
        label=lambda e: str(e.event_type),
    )
    consume(
        app,
        SERVICE,
        referral.links_spec,
        _decoder(LinkRecord),
        referral.on_link,
        label=lambda r: "link" if r.link is not None else "watermark",
        topic=referral.links_topic,
    )
    consume(
        app,
        SERVICE,
        referral.steps_spec,
        _decoder(Step),
        referral.on_step,
        label=_step_kind,
        topic=referral.steps_topic,
    )
    app.timer(interval=config.read_model_interval_seconds)(referral.write_read_model)
    return app


def _step_kind(step: Step) -> str:
    return step.kind
