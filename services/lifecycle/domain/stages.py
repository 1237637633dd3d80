"""Stages and tiers: the stage the rules give a customer at a moment, the tier their balance
gives, the churn score of the open signals, and the stage and tier changes to publish."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from schemas.lifecycle import ChurnCause, Stage, StageChanged, Strategy, Tier
from services.lifecycle.domain.balances import average_balance
from services.lifecycle.domain.explain import explain_at_risk
from services.lifecycle.domain.rules import LifecycleRules
from services.lifecycle.domain.state import CustomerState, Output, output_id


def churn_score(state: CustomerState) -> float:
    """Noisy-OR of the open signals' weights: the chance that at least one is right."""
    keep = 1.0
    for signal in state.signals.values():
        keep *= 1.0 - signal.weight
    return round(1.0 - keep, 4)


def probable_cause(state: CustomerState) -> ChurnCause | None:
    """The cause whose open signals together weigh most (noisy-OR per cause). On a tie, the
    cause seen first: later signals are usually its consequences (a customer in hardship loses
    the salary after the savings start to go; one who complained then moves the money)."""
    keep: dict[ChurnCause, float] = {}
    first: dict[ChurnCause, datetime] = {}
    for signal in state.signals.values():
        keep[signal.cause] = keep.get(signal.cause, 1.0) * (1.0 - signal.weight)
        first[signal.cause] = min(first.get(signal.cause, signal.raised_at), signal.raised_at)
    if not keep:
        return None
    return min(keep, key=lambda cause: (round(keep[cause], 6), first[cause], cause.value))


def target_stage(state: CustomerState, t: datetime, rules: LifecycleRules) -> tuple[Stage, str]:
    """The stage the rules give at time t, and why."""
    if not state.open_accounts:
        return Stage.CHURNED, "the last open account was closed"
    assert state.relationship_start is not None
    quiet_since = state.last_activity_at or state.relationship_start
    if t - quiet_since >= rules.spans.dormant_after:
        return Stage.DORMANT, f"no customer-initiated activity for {rules.dormant_after_days} days"
    if not state.activated:
        if t - state.relationship_start >= rules.spans.activation_window:
            return Stage.DORMANT, f"not activated within {rules.activation_window_days} days"
        stage, reason = Stage.ACQUISITION, "account opened, not yet activated"
    else:
        stage, reason = Stage.GROWTH, "activated"
        tenure = t - state.relationship_start
        recent = state.last_activity_at is not None and t - state.last_activity_at < timedelta(
            days=rules.maturity_recent_activity_days
        )
        deep = (
            len(state.open_products) >= rules.maturity_products
            or average_balance(state, t, 90) >= rules.maturity_avg_balance_90d
        )
        if tenure >= rules.spans.maturity_tenure and deep and recent:
            stage, reason = Stage.MATURITY, "tenure of a year or more, depth and recent activity"
    if churn_score(state) >= rules.at_risk_score:
        causes = sorted({s.cause.value for s in state.signals.values()})
        return Stage.AT_RISK, f"churn score {churn_score(state):.2f} ({', '.join(causes)})"
    return stage, reason


def target_tier(current: Tier | None, avg: Decimal, rules: LifecycleRules) -> Tier:
    """Tier by 30-day average balance; leaving a tier takes falling 10 % below its line, so a
    customer hovering at a line does not flap."""
    plain = (
        Tier.HNW
        if avg >= rules.hnw_from
        else Tier.AFFLUENT
        if avg >= rules.affluent_from
        else Tier.MASS
    )
    if current is None:
        return plain
    order = [Tier.MASS, Tier.AFFLUENT, Tier.HNW]
    if order.index(plain) >= order.index(current):
        return plain
    lines = {Tier.AFFLUENT: rules.affluent_from, Tier.HNW: rules.hnw_from}
    tier = current
    while tier is not Tier.MASS and avg < lines[tier] * (1 - rules.tier_hysteresis):
        tier = order[order.index(tier) - 1]
    return tier


def reevaluate(
    state: CustomerState, t: datetime, cause_event_id: str | None, rules: LifecycleRules
) -> list[Output]:
    outputs: list[Output] = []
    avg30 = average_balance(state, t, 30)
    stage, reason = target_stage(state, t, rules)
    tier = target_tier(state.tier if state.stage else None, avg30, rules)
    causes = sorted({s.cause for s in state.signals.values()}, key=str)

    def change(kind: str, previous_stage: Stage | None, previous_tier: Tier, why: str) -> None:
        at_risk = kind == "stage" and stage is Stage.AT_RISK
        outputs.append(
            StageChanged(
                event_id=output_id(
                    state.customer_id,
                    kind,
                    previous_stage if kind == "stage" else previous_tier,
                    stage if kind == "stage" else tier,
                    t.isoformat(),
                ),
                type=f"{kind}.changed",
                occurred_at=t,
                customer_id=state.customer_id,
                previous_stage=previous_stage,
                stage=stage,
                previous_tier=previous_tier,
                tier=tier,
                reason=why,
                cause_event_id=cause_event_id,
                win_back=kind == "stage" and state.win_back and stage is Stage.ACQUISITION,
                churn_score=churn_score(state),
                churn_causes=causes if at_risk else [],
                probable_cause=probable_cause(state) if at_risk else None,
                strategy=Strategy.for_stage(stage),
                balance_avg_30d=avg30,
                explanation=explain_at_risk(
                    churn_score(state),
                    [(kind, s.evidence) for kind, s in sorted(state.signals.items())],
                )
                if at_risk
                else None,
            )
        )

    if stage is not state.stage:
        previous = state.stage
        state.stage, state.stage_since = stage, t
        if stage is Stage.MATURITY:
            state.matured_once = True
        change("stage", previous, state.tier, reason)
    if tier is not state.tier:
        previous_tier, state.tier = state.tier, tier
        change("tier", stage, previous_tier, f"30-day average balance {avg30}")
    return outputs
