"""Payloads of the lifecycle service's topics: stage and tier changes, churn signals."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from schemas.account_events import EventTime, SignedMoney
from schemas.envelope import RapportEvent


class Stage(StrEnum):
    """Where a customer is in their life with the bank (客户生命周期)."""

    ACQUISITION = "acquisition"
    GROWTH = "growth"
    MATURITY = "maturity"
    AT_RISK = "at_risk"
    DORMANT = "dormant"
    CHURNED = "churned"


class Tier(StrEnum):
    """Value tier by assets under management (客户分层)."""

    MASS = "mass"
    AFFLUENT = "affluent"
    HNW = "hnw"


class ChurnCause(StrEnum):
    """Why a customer is likely to leave."""

    SERVICE_DISSATISFACTION = "service_dissatisfaction"
    COMPETITOR_ATTRACTION = "competitor_attraction"
    FINANCIAL_DISTRESS = "financial_distress"
    DISENGAGEMENT = "disengagement"


class SignalKind(StrEnum):
    """The observable patterns that raise a churn signal."""

    INACTIVITY = "inactivity"
    BALANCE_DRAIN = "balance_drain"
    SALARY_STOPPED = "salary_stopped"
    COMPETITOR_TRANSFER = "competitor_transfer"
    PRODUCT_CLOSURE = "product_closure"
    COMPLAINT = "complaint"
    # Added 2026-12: standing orders and direct debits cancelled in a burst. Consumers should
    # treat a signal kind they do not know like any other (its cause says what it means).
    PAYMENTS_MOVED = "payments_moved"
    # Added 2026-12-05: the regular income (a salary) paid short twice running, an early sign
    # of hardship (hours cut, a pay cut) before the savings run down.
    INCOME_FELL = "income_fell"


# The service strategy the bank applies in each stage (domain.md); codes are stable for
# consumers, descriptions are for people.
STRATEGIES: dict[Stage, tuple[str, str]] = {
    Stage.ACQUISITION: ("onboarding_offer", "easy onboarding and a new-customer offer"),
    Stage.GROWTH: ("personalised_recommendation", "personalised service and regular contact"),
    Stage.MATURITY: (
        "exclusive_service_cross_sell",
        "exclusive service, cross-sell and up-sell",
    ),
    Stage.AT_RISK: (
        "retention_fix",
        "find the cause, fix it, and make a retention offer",
    ),
    Stage.DORMANT: ("win_back", "win-back campaign"),
    Stage.CHURNED: ("win_back", "win-back campaign"),
}


class Strategy(BaseModel):
    """The recommended service strategy for a stage."""

    model_config = ConfigDict(frozen=True)

    code: str
    description: str

    @classmethod
    def for_stage(cls, stage: Stage) -> Strategy:
        """The strategy the product recommends in a stage."""
        code, description = STRATEGIES[stage]
        return cls(code=code, description=description)


class StageChanged(RapportEvent):
    """`stage.changed` or `tier.changed` on `rapport.lifecycle.stage-changed.v1`."""

    type: Literal["stage.changed", "tier.changed"]
    customer_id: str
    previous_stage: Stage | None = None
    stage: Stage
    previous_tier: Tier | None = None
    tier: Tier
    reason: str
    cause_event_id: str | None = None
    win_back: bool = False
    churn_score: float
    churn_causes: list[ChurnCause] = []
    # Additive (old consumers ignore it): the cause whose open signals weigh most, set with at_risk.
    probable_cause: ChurnCause | None = None
    strategy: Strategy
    balance_avg_30d: SignedMoney
    # Added 2026-12, with at_risk: why, in one sentence per locale ("en", "zh-CN"): each open
    # signal's values against the customer's baseline and the rule's threshold.
    explanation: dict[str, str] | None = None


class TenureAnniversary(RapportEvent):
    """`tenure.anniversary` on `rapport.lifecycle.milestones.v1`: a customer completed another
    year with the bank, dated at the anniversary itself (event time). Only anniversaries reached
    while the service watches are announced, never ones that passed before it first saw the
    customer; a customer who left and came back counts from the new start."""

    type: Literal["tenure.anniversary"]
    customer_id: str
    years: Annotated[int, Field(ge=1)]
    relationship_start: EventTime
    stage: Stage
    tier: Tier


class CustomerBirthday(RapportEvent):
    """`customer.birthday` on `rapport.lifecycle.milestones.v1`: dated at midnight of the
    birthday in the customer's time zone (from `customer.updated`; Asia/Shanghai when unknown).
    A 29 February birthday falls on 28 February in other years. Only birthdays reached while the
    service watches an active customer are announced."""

    type: Literal["customer.birthday"]
    customer_id: str
    stage: Stage
    tier: Tier


Milestone = Annotated[TenureAnniversary | CustomerBirthday, Field(discriminator="type")]
MILESTONE_ADAPTER: TypeAdapter[TenureAnniversary | CustomerBirthday] = TypeAdapter(Milestone)


class ChurnSignalChanged(RapportEvent):
    """`churn_signal.raised|escalated|resolved` on `rapport.lifecycle.churn-signals.v1`."""

    type: Literal["churn_signal.raised", "churn_signal.escalated", "churn_signal.resolved"]
    customer_id: str
    signal: SignalKind
    cause: ChurnCause
    signal_weight: Annotated[float, Field(ge=0, le=1)]
    churn_score: Annotated[float, Field(ge=0, le=1)]
    stage: Stage
    tier: Tier
    evidence: dict[str, JsonValue]
    # Added 2026-12, on raised and escalated: the evidence as a sentence per locale.
    explanation: dict[str, str] | None = None
