"""The records between the referral worker's keyed steps (links and steps topics), and the
arithmetic of the marks that order them: how far each source has sent its records, which
sources are idle, and up to which day a receiver may apply what waits (docs/referral.md,
"Order of the steps" and "Idle input partitions")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from services.referral.domain import Candidate, ChainMatch, Decision, Link


class Watermark(BaseModel):
    """From one input partition to every links partition: every link of that partition with
    an event time before the start of `day` (an ordinal) has been sent. `idle`: the partition
    is idle (services/runtime/idle.py): every link it has was sent, all of them dated before
    `through` (the day after its newest event time); it holds nothing back until its next
    mark, which is not idle."""

    source: int
    day: int
    idle: bool = False
    through: int = 0


class StepMark(BaseModel):
    """From a source to every steps partition: the source has sent everything dated before the
    start of `day` (an ordinal) that makes candidates. Sources: `input:<p>` (an input partition:
    candidates of code referrals and rechecks), `links:<p>` (a links partition: chain matches),
    and `steps:<p>` (a steps partition: candidates made of the chain matches it had from every
    links partition, forwarded once all of them passed the day). `idle` and `through`: an idle
    input partition, as in `Watermark`."""

    source: str
    day: int
    idle: bool = False
    through: int = 0


class LinkRecord(BaseModel):
    """What travels on the links topic: a link (keyed by counterparty) or a watermark."""

    link: Link | None = None
    watermark: Watermark | None = None


class Review(BaseModel):
    """The bank's verdict on a held referral, sent by the API."""

    referral_id: str
    referee: str
    approve: bool
    reviewed_at: datetime


class Step(BaseModel):
    """An internal record between the keyed steps, on the steps topic (keyed by customer):
    exactly one of its fields is set."""

    chain_match: ChainMatch | None = None
    candidate: Candidate | None = None
    decision: Decision | None = None
    review: Review | None = None
    mark: StepMark | None = None

    @property
    def kind(self) -> str:
        """Which step it is (a metric label)."""
        for name in ("chain_match", "candidate", "decision", "review", "mark"):
            if getattr(self, name) is not None:
                return name
        raise ValueError("a step with nothing in it")

    @property
    def customer_id(self) -> str:
        """The key it travels under: the customer whose state it changes."""
        if self.chain_match is not None:
            return self.chain_match.referee
        if self.candidate is not None:
            return self.candidate.referrer
        if self.review is not None:
            return self.review.referee
        if self.mark is not None:
            return "#mark"  # sent to every partition, not by key
        assert self.decision is not None
        return self.decision.candidate.referee


def source_state(raw: bytes | None) -> tuple[int, int]:
    """An input partition's `#source:<p>`: the last day its marks told, and the day before
    which every link it has was sent (stored as the day alone before idle partitions: then
    that day, a lower bound)."""
    if not raw:
        return 0, 0
    day, _, through = raw.partition(b" ")
    return int(day), int(through or day)


def note_idle(marks: dict[str, Any], source: str, mark: Watermark | StepMark) -> dict[str, int]:
    """Record in a receiver's marks whether `source` is idle (and before which day it has
    sent everything), and return the idle sources. Nothing is stored while none is idle."""
    idle: dict[str, int] = marks.get("idle", {})
    if mark.idle:
        idle[source] = max(idle.get(source, 0), mark.through, mark.day)
    else:
        idle.pop(source, None)
    if idle:
        marks["idle"] = idle
    else:
        marks.pop("idle", None)
    return idle


def release_day(days: dict[str, int], idle: dict[str, int]) -> int:
    """The day before which every source has sent everything: the lowest day of the sources
    that are not idle (an idle one holds nothing back); when all are idle, the highest day an
    idle one sent everything before (all input has been sent)."""
    busy = [day for source, day in days.items() if source not in idle]
    if busy:
        return min(busy)
    return max(idle.values(), default=0)


def low_day(marks: dict[str, int], kind: str, sources: int) -> int:
    """The lowest day that every source of `kind` has passed (0 while one has sent none)."""
    return min(marks.get(f"{kind}:{n}", 0) for n in range(sources))
