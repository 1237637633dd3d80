"""A simulated feed through the lifecycle and referral rules in this process: the same service
layers the workers run, over dicts instead of faust tables, each input partition with its own
clock as on the broker. What the evaluation scores when no stack is running (several seeds and
population profiles in a minute, where the live stack takes minutes per feed)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from aiokafka.partitioner import murmur2

from schemas.topics import CHURN_SIGNALS, MILESTONES, REFERRAL_EVENTS, STAGE_CHANGED
from services.lifecycle.config import LifecycleSettings
from services.lifecycle.domain import Output
from services.lifecycle.service import LifecycleService
from services.referral.config import ReferralSettings
from services.referral.domain import CodeGrant, Link
from services.referral.service import Ports, ReferralOutput, ReferralService
from services.referral.steps import LinkRecord, Step, StepMark, Watermark
from services.runtime.codec import Rejection, decode_account_event
from services.runtime.produce import records_from_lines
from services.simulator.simulate import Simulation


def _partition(key: bytes, partitions: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class _Referral:
    """The referral service with its internal topics as in-memory queues, as one worker with
    one input partition (the order of the steps does not change its answers)."""

    def __init__(self, simulation: Simulation, settings: ReferralSettings) -> None:
        issued = simulation.truth.start - timedelta(days=1)
        self.codes = {
            code: CodeGrant(owner=owner, issued_at=issued)
            for code, owner in simulation.truth.codes.items()
        }
        self.outputs: list[ReferralOutput] = []
        self.links: list[LinkRecord] = []
        self.steps: list[Step] = []
        self.service = ReferralService(
            {},
            {},
            Ports(self._publish, self._links, self._watermark, self._steps, self._mark, self._code),
            settings.rules(),
            settings.pseudonym_key.encode(),
            sources=1,
            lateness=timedelta(hours=settings.allowed_lateness_hours),
        )

    async def _publish(self, outputs: list[ReferralOutput]) -> None:
        self.outputs += outputs

    async def _links(self, links: list[Link]) -> None:
        self.links += [LinkRecord(link=item) for item in links]

    async def _watermark(self, mark: Watermark) -> None:
        self.links.append(LinkRecord(watermark=mark))

    async def _steps(self, steps: list[Step]) -> None:
        self.steps += steps

    async def _mark(self, mark: StepMark) -> None:
        self.steps.append(Step(mark=mark))

    async def _code(self, code: str) -> CodeGrant | None:
        return self.codes.get(code)

    async def pump(self) -> None:
        while self.links or self.steps:
            if self.links:
                await self.service.handle_link_record(self.links.pop(0), 0)
            else:
                await self.service.handle_step(self.steps.pop(0), 0)


def replay(
    simulation: Simulation,
    *,
    partitions: int = 6,
    lifecycle: LifecycleSettings | None = None,
    referral: ReferralSettings | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The outputs of lifecycle and referral for the feed, as decoded JSON per topic."""
    lifecycle = lifecycle or LifecycleSettings()
    referral = referral or ReferralSettings()
    outputs: list[Output] = []

    async def publish(found: list[Output]) -> None:
        outputs.extend(found)

    life = LifecycleService(
        {},
        publish,
        lifecycle.rules(),
        timedelta(hours=lifecycle.allowed_lateness_hours),
        lifecycle.pseudonym_key.encode(),
    )
    refer = _Referral(simulation, referral)

    async def run() -> None:
        for record in records_from_lines(simulation.lines):
            event = decode_account_event(record.key, record.value)
            if isinstance(event, Rejection):
                continue
            await life.handle(event, _partition(record.key or b"", partitions))
            await refer.service.handle_account_event(event, 0)
            await refer.service.advance_source(0)
            await refer.pump()

    asyncio.run(run())
    by_topic: dict[str, list[dict[str, Any]]] = {
        STAGE_CHANGED.name: [],
        CHURN_SIGNALS.name: [],
        MILESTONES.name: [],
        REFERRAL_EVENTS.name: [o.model_dump(mode="json") for o in refer.outputs],
    }
    for output in outputs:
        topic = (
            STAGE_CHANGED
            if output.type in ("stage.changed", "tier.changed")
            else CHURN_SIGNALS
            if output.type.startswith("churn_signal.")
            else MILESTONES
        )
        by_topic[topic.name].append(output.model_dump(mode="json"))
    return by_topic
