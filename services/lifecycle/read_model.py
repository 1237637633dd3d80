"""The lifecycle read model: one row per customer in SQL, written by the worker in batches off
the stream's path and read by the API, so a question never waits on (or blocks) the stream."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Column, DateTime, Index, func, select
from sqlmodel import Field, SQLModel

from schemas.lifecycle import ChurnCause, SignalKind, Stage, Strategy, Tier
from services.lifecycle.domain import CustomerState, average_balance, churn_score
from services.lifecycle.domain.explain import explain_signal
from services.runtime import db
from services.runtime.db import as_utc, get_engine

_TIME = DateTime(timezone=True)


class LifecycleProfileRow(SQLModel, table=True):
    """A customer's lifecycle as the API shows it (money as decimal strings)."""

    __tablename__ = "lifecycle_profiles"
    __table_args__ = (Index("ix_lifecycle_profiles_stage_tier", "stage", "tier"),)

    customer_id: str = Field(primary_key=True, max_length=64)
    version: int
    stage: str | None = Field(default=None, max_length=16)
    stage_since: datetime | None = Field(default=None, sa_type=_TIME)
    tier: str = Field(max_length=16)
    win_back: bool = False
    churn_score: float = 0.0
    signals: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    relationship_start: datetime | None = Field(default=None, sa_type=_TIME)
    last_activity_at: datetime | None = Field(default=None, sa_type=_TIME)
    total_balance: str = Field(max_length=32)
    balance_avg_30d: str = Field(max_length=32)
    balance_avg_90d: str = Field(max_length=32)
    open_accounts: int = 0
    open_products: int = 0
    as_of: datetime = Field(sa_type=_TIME)


# -- the API's view of it --------------------------------------------------------------------


class OpenSignalView(BaseModel):
    """An open churn signal and why it was raised."""

    signal: SignalKind
    cause: ChurnCause
    raised_at: datetime
    escalated: bool
    weight: float
    evidence: dict[str, Any]
    # The evidence as one sentence per locale ("en", "zh-CN"), for an RM.
    explanation: dict[str, str] = {}


class KeyFigures(BaseModel):
    """The figures an RM looks at first, as of the customer's latest event or deadline."""

    total_balance: Decimal
    balance_avg_30d: Decimal
    balance_avg_90d: Decimal
    open_accounts: int
    open_products: int
    relationship_start: datetime | None
    tenure_days: int | None
    last_activity_at: datetime | None
    days_since_activity: int | None


class CustomerLifecycle(BaseModel):
    """Where a customer is in their life with the bank, what they are worth, and whether and why
    they may leave."""

    customer_id: str
    stage: Stage | None
    since: datetime | None
    tier: Tier
    win_back: bool
    churn_score: float
    open_signals: list[OpenSignalView]
    strategy: Strategy | None
    key_figures: KeyFigures
    as_of: datetime


class LifecycleSummary(BaseModel):
    """How many customers are in each stage and tier."""

    customers: int
    by_stage: dict[Stage, int]
    by_tier: dict[Tier, int]
    by_stage_and_tier: dict[Stage, dict[Tier, int]]


# -- projection ------------------------------------------------------------------------------


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def profile_row(state: CustomerState) -> dict[str, Any]:
    """The read-model row of a customer's state, as the columns of a `LifecycleProfileRow`: a
    plain dict, since building the ORM object and dumping it again took three times as long as
    the row itself, in the worker's event loop."""
    as_of = max(
        (t for t in (state.last_event_at, state.evaluated_until) if t is not None),
        default=datetime(1970, 1, 1, tzinfo=UTC),
    )
    signals = [
        {
            "signal": kind.value,
            "cause": signal.cause.value,
            "raised_at": signal.raised_at.isoformat(),
            "escalated": signal.escalated,
            "weight": signal.weight,
            "evidence": signal.evidence,
            "explanation": explain_signal(kind, signal.evidence),
        }
        for kind, signal in sorted(state.signals.items())
    ]
    return dict(
        customer_id=state.customer_id,
        version=state.version,
        stage=state.stage.value if state.stage else None,
        stage_since=state.stage_since,
        tier=state.tier.value,
        win_back=state.win_back,
        churn_score=churn_score(state),
        signals=signals,
        relationship_start=state.relationship_start,
        last_activity_at=state.last_activity_at,
        total_balance=_money(state.total_balance),
        balance_avg_30d=_money(average_balance(state, as_of, 30)),
        balance_avg_90d=_money(average_balance(state, as_of, 90)),
        open_accounts=len(state.open_accounts),
        open_products=len(state.open_products),
        as_of=as_of,
    )


def write(url: str, rows: list[dict[str, Any]]) -> None:
    """Upsert rows (`profile_row`), keeping whichever version of a customer is newest."""
    table = LifecycleProfileRow.__table__  # type: ignore[attr-defined]
    db.upsert(url, table, rows, "customer_id", "version")


# -- queries ---------------------------------------------------------------------------------


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def customer(url: str, customer_id: str) -> CustomerLifecycle | None:
    """A customer's lifecycle, or None when the read model has not seen them."""
    with get_engine(url).connect() as connection:
        found = connection.execute(
            select(LifecycleProfileRow.__table__).where(  # type: ignore[attr-defined]
                LifecycleProfileRow.__table__.c.customer_id == customer_id  # type: ignore[attr-defined]
            )
        ).first()
    if found is None:
        return None
    row = LifecycleProfileRow.model_validate(found._mapping)
    as_of = _utc(row.as_of)
    assert as_of is not None
    start, last = _utc(row.relationship_start), _utc(row.last_activity_at)
    stage = Stage(row.stage) if row.stage else None
    strategy = Strategy.for_stage(stage) if stage is not None else None
    return CustomerLifecycle(
        customer_id=row.customer_id,
        stage=stage,
        since=_utc(row.stage_since),
        tier=Tier(row.tier),
        win_back=row.win_back,
        churn_score=row.churn_score,
        open_signals=[OpenSignalView.model_validate(s) for s in row.signals],
        strategy=strategy,
        key_figures=KeyFigures(
            total_balance=Decimal(row.total_balance),
            balance_avg_30d=Decimal(row.balance_avg_30d),
            balance_avg_90d=Decimal(row.balance_avg_90d),
            open_accounts=row.open_accounts,
            open_products=row.open_products,
            relationship_start=start,
            tenure_days=(as_of - start).days if start else None,
            last_activity_at=last,
            days_since_activity=(as_of - last).days if last else None,
        ),
        as_of=as_of,
    )


def counts(url: str) -> list[tuple[Stage, Tier, int]]:
    """Customers per (stage, tier), leaving out customers with no stage yet."""
    table = LifecycleProfileRow.__table__  # type: ignore[attr-defined]
    with get_engine(url).connect() as connection:
        result = connection.execute(
            select(table.c.stage, table.c.tier, func.count())
            .where(table.c.stage.is_not(None))
            .group_by(table.c.stage, table.c.tier)
        ).all()
    return [(Stage(stage), Tier(tier), int(n)) for stage, tier, n in result]


def summary(url: str) -> LifecycleSummary:
    """Counts by stage, by tier and by both; every stage and tier is listed, zeros included."""
    matrix = {stage: dict.fromkeys(Tier, 0) for stage in Stage}
    for stage, tier, n in counts(url):
        matrix[stage][tier] = n
    return LifecycleSummary(
        customers=sum(sum(row.values()) for row in matrix.values()),
        by_stage={stage: sum(row.values()) for stage, row in matrix.items()},
        by_tier={tier: sum(row[tier] for row in matrix.values()) for tier in Tier},
        by_stage_and_tier=matrix,
    )
