"""Reading what the running workers did, from their /metrics endpoints."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from schemas.topics import ALL_TOPICS
from services.runtime.readback import committed_offsets, topic_ends
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings


@dataclass
class WorkerCounts:
    """Records of the contract's topics one worker accepted and dead-lettered so far."""

    service: str
    reachable: bool = False
    consumed: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    dead_lettered: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    # Every record finished, internal topics included: it stops moving when the worker is idle.
    all_records: int = 0
    # What the service concluded, from its business counters, as "what happened" -> count.
    outcomes: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @property
    def total(self) -> int:
        """Every record the worker has finished with, accepted or dead-lettered."""
        return int(sum(self.consumed.values()) + sum(self.dead_lettered.values()))


_RECORD_COUNTERS = ("rapport_events_consumed_total", "rapport_events_dead_lettered_total")
_CONTRACT_TOPICS = frozenset(t.name for t in ALL_TOPICS)


def read_worker(settings: RuntimeSettings, service: str, url: str | None = None) -> WorkerCounts:
    """Scrape one worker's metrics (at `url`, else on this machine's metrics port)."""
    counts = WorkerCounts(service)
    url = url or f"http://{settings.metrics_host}:{settings.metrics_port(service)}/metrics"
    try:
        text = httpx.get(url, timeout=2.0).text
    except httpx.HTTPError:
        return counts
    counts.reachable = True
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _RECORD_COUNTERS:
                counts.all_records += int(sample.value)
                if sample.labels["topic"] not in _CONTRACT_TOPICS:
                    # A service's internal topics (the referral steps): not records it was given.
                    continue
            if sample.name == "rapport_events_consumed_total":
                counts.consumed[sample.labels["event_type"]] += sample.value
            elif sample.name == "rapport_events_dead_lettered_total":
                counts.dead_lettered[sample.labels["reason"]] += sample.value
            elif sample.name == "rapport_lifecycle_stage_transitions_total":
                labels = sample.labels
                counts.outcomes[f"stage {labels['from_stage']} -> {labels['to_stage']}"] += (
                    sample.value
                )
            elif sample.name == "rapport_lifecycle_churn_signals_total":
                labels = sample.labels
                key = f"churn signal {labels['change']}: {labels['signal']} ({labels['cause']})"
                counts.outcomes[key] += sample.value
    return counts


def read_workers(
    settings: RuntimeSettings, urls: dict[str, str] | None = None
) -> list[WorkerCounts]:
    """Scrape every worker (those named in `urls` at their URL)."""
    return [read_worker(settings, s, (urls or {}).get(s)) for s in SERVICE_NAMES]


def wait_until_drained(
    settings: RuntimeSettings,
    expected: dict[str, int],
    timeout: float = 300.0,
    on_progress: Callable[[list[WorkerCounts]], None] | None = None,
) -> list[WorkerCounts]:
    """Wait until each named worker has finished `expected[service]` records, or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        counts = read_workers(settings)
        if on_progress is not None:
            on_progress(counts)
        done = all(c.total >= expected.get(c.service, 0) for c in counts)
        if done or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def wait_until_quiet(settings: RuntimeSettings, timeout: float = 120.0, still: float = 3.0) -> None:
    """Wait until no worker finishes another record, internal topics included, for `still`
    seconds, and every worker's group has committed the end of every topic it reads: a
    service's own steps (the referral service's) go on after its input is done, and a batch
    being handled counts its records only at its end."""
    deadline = time.monotonic() + timeout
    last = [c.all_records for c in read_workers(settings)]
    while time.monotonic() < deadline:
        time.sleep(still)
        now = [c.all_records for c in read_workers(settings)]
        if now == last and asyncio.run(uncommitted(settings)) == 0:
            return
        last = now


async def lag_by_service(settings: RuntimeSettings) -> dict[str, int]:
    """Records not yet committed by each worker's group, over every topic the group reads; a
    group that has committed nothing yet is left out (what it reads is not known then)."""
    groups = {settings.app_id(service): service for service in SERVICE_NAMES}
    committed = await committed_offsets(settings.bootstrap_list, list(groups))
    topics = sorted({topic for by_topic in committed.values() for topic in by_topic})
    ends = await topic_ends(settings.bootstrap_list, topics)
    return {
        groups[group]: sum(
            max(ends.get(topic, {}).get(partition, 0) - offset, 0)
            for topic, offsets in by_topic.items()
            for partition, offset in offsets.items()
        )
        for group, by_topic in committed.items()
        if by_topic
    }


async def uncommitted(settings: RuntimeSettings) -> int:
    """Records not yet committed by the workers' groups, over every topic each group reads."""
    return sum((await lag_by_service(settings)).values())
