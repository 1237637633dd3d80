"""The team page's picture of stages over time: the lifecycle service's month-end counts as
stacked columns, one chart per tier, drawn as SVG by the template (no script, no inline style:
the page's CSP allows neither)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.lifecycle import Stage, Tier

# In the contract's order: acquisition at the bottom of a column, mass the first chart.
STAGES = tuple(stage.value for stage in Stage)
TIERS = tuple(tier.value for tier in Tier)
HEIGHT = 120.0  # the tallest column, in the SVG's units
COLUMN = 28.0  # a month's width, its gap included


@dataclass(frozen=True)
class Segment:
    stage: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Column:
    month: str
    x: float
    counts: dict[str, int]  # stage -> customers
    segments: list[Segment]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def stage_columns(monthly: list[dict[str, Any]], tier: str) -> list[Column]:
    """A column per month of the tier's customers, stacked by stage from acquisition at the
    bottom; heights on the scale of the tier's fullest month."""
    counts = [
        {stage: int(month["by_stage_and_tier"].get(stage, {}).get(tier, 0)) for stage in STAGES}
        for month in monthly
    ]
    most = max((sum(c.values()) for c in counts), default=0) or 1
    columns = []
    for n, (month, by_stage) in enumerate(zip(monthly, counts, strict=True)):
        bottom = HEIGHT
        segments = []
        for stage in STAGES:
            height = by_stage[stage] / most * HEIGHT
            if by_stage[stage]:
                bottom -= height
                segments.append(Segment(stage, by_stage[stage], round(bottom, 2), round(height, 2)))
        columns.append(Column(month["month"], n * COLUMN, by_stage, segments))
    return columns
