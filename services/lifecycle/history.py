"""The lifecycle history: every stage and tier change and churn signal the lifecycle service
published, one row each, for the pages that tell a customer's story and the team's picture of
stages over time. The read model (`read_model.py`) keeps only where a customer stands now.

The worker projects its own output topics into this table (`agents.py`): an event is inserted
under its id or not at all, so a record taken again after a crash or a rebalance changes
nothing, and its offset is committed only after its row is written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Column, DateTime, Index, func, select
from sqlmodel import Field, SQLModel

from schemas.lifecycle import ChurnCause, ChurnSignalChanged, SignalKind, Stage, StageChanged, Tier
from services.runtime import db
from services.runtime.db import as_utc, get_engine

_TIME = DateTime(timezone=True)
# What a customer's page shows at most, newest first: years of a busy customer's changes.
MAX_ENTRIES = 500
MAX_MONTHS = 36


class LifecycleHistoryRow(SQLModel, table=True):
    """One published stage change, tier change or churn signal change."""

    __tablename__ = "lifecycle_history"
    __table_args__ = (
        Index("ix_lifecycle_history_customer_at", "customer_id", "occurred_at"),
        Index("ix_lifecycle_history_at", "occurred_at"),
    )

    event_id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(max_length=64)
    # stage.changed, tier.changed, churn_signal.raised|escalated|resolved
    type: str = Field(max_length=32)
    occurred_at: datetime = Field(sa_type=_TIME)
    # Where the customer stands after the event.
    stage: str = Field(max_length=16)
    tier: str = Field(max_length=16)
    previous_stage: str | None = Field(default=None, max_length=16)
    previous_tier: str | None = Field(default=None, max_length=16)
    signal: str | None = Field(default=None, max_length=40)
    cause: str | None = Field(default=None, max_length=40)
    churn_score: float = 0.0
    # The stage change's reason, or the signal's evidence, explanation and weight.
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class HistoryEntry(BaseModel):
    """A change in a customer's lifecycle, as published."""

    event_id: str
    type: str
    occurred_at: datetime
    stage: Stage
    tier: Tier
    previous_stage: Stage | None = None
    previous_tier: Tier | None = None
    signal: SignalKind | None = None
    cause: ChurnCause | None = None
    churn_score: float
    reason: str | None = None
    probable_cause: ChurnCause | None = None
    evidence: dict[str, Any] | None = None
    # One sentence per locale ("en", "zh-CN"), where the event had one.
    explanation: dict[str, str] | None = None


class MonthCounts(BaseModel):
    """Customers in each stage and tier at the end of a month (by event time)."""

    month: str  # YYYY-MM
    customers: int
    by_stage_and_tier: dict[Stage, dict[Tier, int]]


# -- projection ------------------------------------------------------------------------------


def history_row(event: StageChanged | ChurnSignalChanged) -> dict[str, Any]:
    """The row of a stage or tier change, or of a churn signal's change."""
    row: dict[str, Any] = dict(
        event_id=event.event_id,
        customer_id=event.customer_id,
        type=event.type,
        occurred_at=event.occurred_at,
        stage=event.stage.value,
        tier=event.tier.value,
        previous_stage=None,
        previous_tier=None,
        signal=None,
        cause=None,
        churn_score=event.churn_score,
    )
    if isinstance(event, StageChanged):
        row["previous_stage"] = event.previous_stage.value if event.previous_stage else None
        row["previous_tier"] = event.previous_tier.value if event.previous_tier else None
        details: dict[str, Any] = {"reason": event.reason}
        if event.probable_cause is not None:
            details["probable_cause"] = event.probable_cause.value
    else:
        row["signal"], row["cause"] = event.signal.value, event.cause.value
        details = {"evidence": event.evidence, "weight": event.signal_weight}
    if event.explanation:
        details["explanation"] = event.explanation
    return row | {"details": details}


def write(url: str, rows: list[dict[str, Any]]) -> None:
    """Insert the rows whose event is not in the table yet."""
    db.insert_missing(url, LifecycleHistoryRow.__table__, rows, "event_id")  # type: ignore[attr-defined]


# -- queries ---------------------------------------------------------------------------------


def of_customer(url: str, customer_id: str, limit: int = MAX_ENTRIES) -> list[HistoryEntry]:
    """A customer's changes, newest first."""
    table = LifecycleHistoryRow.__table__  # type: ignore[attr-defined]
    with get_engine(url).connect() as connection:
        found = connection.execute(
            select(table)
            .where(table.c.customer_id == customer_id)
            .order_by(table.c.occurred_at.desc(), table.c.event_id.desc())
            .limit(limit)
        ).all()
    entries = []
    for row in found:
        details = row.details or {}
        entries.append(
            HistoryEntry(
                event_id=row.event_id,
                type=row.type,
                occurred_at=as_utc(row.occurred_at),
                stage=Stage(row.stage),
                tier=Tier(row.tier),
                previous_stage=row.previous_stage,
                previous_tier=row.previous_tier,
                signal=row.signal,
                cause=row.cause,
                churn_score=row.churn_score,
                reason=details.get("reason"),
                probable_cause=details.get("probable_cause"),
                evidence=details.get("evidence"),
                explanation=details.get("explanation"),
            )
        )
    return entries


def _month_ends(last: datetime, months: int) -> list[tuple[str, datetime]]:
    """(YYYY-MM, the first instant after it) for the `months` months up to `last`'s, oldest
    first."""
    year, month = last.year, last.month
    ends = []
    for _ in range(months):
        after = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        ends.append((f"{year:04d}-{month:02d}", after))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return ends[::-1]


def monthly(url: str, months: int = 12) -> list[MonthCounts]:
    """Customers by stage and tier at the end of each of the last `months` months of event
    time (the months up to the newest change): each customer counted where their latest stage
    or tier change by then left them. One query per month, over the stage and tier changes."""
    table = LifecycleHistoryRow.__table__  # type: ignore[attr-defined]
    changes = table.c.type.in_(("stage.changed", "tier.changed"))
    engine = get_engine(url)
    with engine.connect() as connection:
        last = connection.execute(select(func.max(table.c.occurred_at)).where(changes)).scalar()
        if last is None:
            return []
        result = []
        for month, after in _month_ends(as_utc(last), months):
            latest = (
                select(
                    table.c.stage,
                    table.c.tier,
                    func.row_number()
                    .over(
                        partition_by=table.c.customer_id,
                        order_by=(table.c.occurred_at.desc(), table.c.event_id.desc()),
                    )
                    .label("newest"),
                )
                .where(changes, table.c.occurred_at < after)
                .subquery()
            )
            counted = connection.execute(
                select(latest.c.stage, latest.c.tier, func.count())
                .where(latest.c.newest == 1)
                .group_by(latest.c.stage, latest.c.tier)
            ).all()
            matrix = {stage: dict.fromkeys(Tier, 0) for stage in Stage}
            for stage, tier, n in counted:
                matrix[Stage(stage)][Tier(tier)] = int(n)
            result.append(
                MonthCounts(
                    month=month,
                    customers=sum(sum(row.values()) for row in matrix.values()),
                    by_stage_and_tier=matrix,
                )
            )
    return result
