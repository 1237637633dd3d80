"""Rewards rules: point values, campaigns, caps, clawbacks and redemptions, without a ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.lifecycle import Stage, StageChanged, Strategy, TenureAnniversary, Tier
from schemas.referral import LeadType, ReferralChanged
from schemas.rewards import EntryKind
from services.rewards.domain import (
    Campaign,
    Credited,
    RedemptionRefused,
    ReferrerCredit,
    ReferrerHistory,
    RewardRules,
    Rule,
    WithholdReason,
    on_anniversary,
    on_referral_qualified,
    on_referral_reversed,
    on_stage_changed,
    priced,
    redeem,
    referrer_history,
)

RULES = RewardRules()
T = datetime(2026, 3, 10, 12, tzinfo=UTC)
FRESH = ReferrerHistory(points_this_month=0, rewarded_this_year=0)


def qualified(referrer: str | None = "R1", at: datetime = T) -> ReferralChanged:
    return ReferralChanged(
        event_id="q-1",
        type="referral.qualified",
        occurred_at=at,
        referral_id="ref-1",
        referrer=referrer,
        referee="E1",
        via="code",
        lead_type=LeadType.RETAIL,
    )


def campaign(rule: Rule = Rule.REFERRAL_REFERRER, **fields: object) -> Campaign:
    values: dict[str, object] = {
        "campaign_id": "double-march",
        "name": "Double referral points in March",
        "rule": rule,
        "multiplier": Decimal(2),
        "starts_at": datetime(2026, 3, 1, tzinfo=UTC),
        "ends_at": datetime(2026, 4, 1, tzinfo=UTC),
        **fields,
    }
    return Campaign.model_validate(values)


def test_a_qualified_referral_pays_200_to_the_referrer_and_100_to_the_referee() -> None:
    decision = on_referral_qualified(qualified(), RULES, [], FRESH)
    assert [(b.customer_id, b.points, b.rule) for b in decision.bookings] == [
        ("E1", 100, Rule.REFERRAL_REFEREE),
        ("R1", 200, Rule.REFERRAL_REFERRER),
    ]
    assert all(b.kind is EntryKind.CREDIT and b.referral_id == "ref-1" for b in decision.bookings)
    assert decision.withholdings == []


def test_without_a_known_referrer_only_the_referee_is_welcomed() -> None:
    decision = on_referral_qualified(qualified(referrer=None), RULES, [], None)
    assert [(b.customer_id, b.points) for b in decision.bookings] == [("E1", 100)]


def test_the_monthly_cap_credits_up_to_2000_and_records_the_rest() -> None:
    history = ReferrerHistory(points_this_month=1900, rewarded_this_year=3)
    decision = on_referral_qualified(qualified(), RULES, [], history)
    referrer = [b for b in decision.bookings if b.customer_id == "R1"]
    assert [b.points for b in referrer] == [100]
    (withheld,) = decision.withholdings
    assert (withheld.points, withheld.reason_code) == (100, WithholdReason.MONTHLY_POINTS_CAP)
    assert "2026-03" in withheld.reason and "2000" in withheld.reason


def test_at_the_monthly_cap_exactly_everything_is_withheld() -> None:
    history = ReferrerHistory(points_this_month=2000, rewarded_this_year=5)
    decision = on_referral_qualified(qualified(), RULES, [], history)
    assert [b.customer_id for b in decision.bookings] == ["E1"]
    assert [w.points for w in decision.withholdings] == [200]


def test_the_eleventh_rewarded_referral_of_a_year_is_withheld_whole() -> None:
    at_cap = ReferrerHistory(points_this_month=0, rewarded_this_year=10)
    below = ReferrerHistory(points_this_month=0, rewarded_this_year=9)
    assert on_referral_qualified(qualified(), RULES, [], below).withholdings == []
    (withheld,) = on_referral_qualified(qualified(), RULES, [], at_cap).withholdings
    assert (withheld.points, withheld.reason_code) == (200, WithholdReason.YEARLY_REFERRALS_CAP)


def test_a_campaign_applies_only_inside_its_dates_and_to_its_rule() -> None:
    double = campaign()
    assert priced(Rule.REFERRAL_REFERRER, 200, T, [double]) == (400, "double-march")
    assert priced(Rule.REFERRAL_REFERRER, 200, datetime(2026, 4, 1, tzinfo=UTC), [double]) == (
        200,
        None,
    )
    assert priced(Rule.REFERRAL_REFEREE, 100, T, [double]) == (100, None)
    assert (
        priced(Rule.REFERRAL_REFERRER, 200, T, [double.model_copy(update={"active": False})])[0]
        == 200
    )


def test_overlapping_campaigns_give_the_customer_the_best() -> None:
    bonus = campaign(campaign_id="bonus", multiplier=Decimal(1), bonus_points=250)
    assert priced(Rule.REFERRAL_REFERRER, 200, T, [campaign(), bonus]) == (450, "bonus")


def test_campaign_points_count_against_the_monthly_cap() -> None:
    history = ReferrerHistory(points_this_month=1800, rewarded_this_year=4)
    decision = on_referral_qualified(qualified(), RULES, [campaign()], history)
    referrer = next(b for b in decision.bookings if b.customer_id == "R1")
    assert (referrer.points, referrer.campaign_id) == (200, "double-march")
    assert [w.points for w in decision.withholdings] == [200]


def test_a_campaign_must_end_after_it_starts_and_boost_a_crediting_rule() -> None:
    with pytest.raises(ValidationError, match="ends_at"):
        campaign(ends_at=datetime(2026, 2, 1, tzinfo=UTC))
    with pytest.raises(ValidationError, match="boosts one of"):
        campaign(rule=Rule.REDEMPTION)


def test_a_reversal_takes_back_what_still_stands_for_both_sides() -> None:
    reversed_ = qualified().model_copy(
        update={"type": "referral.reversed", "event_id": "rv-1", "reason": "closed within 90 days"}
    )
    standing = [
        Credited("E1", Rule.REFERRAL_REFEREE, 100),
        Credited("R1", Rule.REFERRAL_REFERRER, 150),
        Credited("X", Rule.REFERRAL_REFERRER, 0),
    ]
    decision = on_referral_reversed(reversed_, standing)
    assert [(b.customer_id, b.points, b.kind) for b in decision.bookings] == [
        ("E1", -100, EntryKind.REVERSAL),
        ("R1", -150, EntryKind.REVERSAL),
    ]
    assert "closed within 90 days" in decision.bookings[0].reason


def test_a_referrers_history_counts_this_months_and_years_credits_net_of_reversals() -> None:
    at = datetime(2026, 3, 20, tzinfo=UTC)
    credits = [
        ReferrerCredit("r1", EntryKind.CREDIT, 200, datetime(2026, 3, 2, tzinfo=UTC)),
        ReferrerCredit("r2", EntryKind.CREDIT, 400, datetime(2026, 3, 9, tzinfo=UTC)),
        ReferrerCredit("r2", EntryKind.REVERSAL, -400, datetime(2026, 4, 1, tzinfo=UTC)),
        ReferrerCredit("r3", EntryKind.CREDIT, 200, datetime(2026, 1, 5, tzinfo=UTC)),
        ReferrerCredit("r4", EntryKind.CREDIT, 200, datetime(2025, 3, 5, tzinfo=UTC)),
    ]
    # r2 was reversed: it frees its room in March and no longer counts as rewarded this year.
    assert referrer_history(credits, at) == ReferrerHistory(
        points_this_month=200, rewarded_this_year=2
    )


def stage_changed(stage: Stage, kind: str = "stage.changed") -> StageChanged:
    return StageChanged.model_validate(
        {
            "event_id": "s-1",
            "type": kind,
            "occurred_at": T,
            "customer_id": "C1",
            "previous_stage": "growth",
            "stage": stage,
            "previous_tier": "mass",
            "tier": "mass",
            "reason": "test",
            "cause_event_id": None,
            "churn_score": 0.0,
            "strategy": Strategy.for_stage(stage),
            "balance_avg_30d": "100.00",
        }
    )


def test_first_entry_into_maturity_earns_500_once() -> None:
    (booking,) = on_stage_changed(stage_changed(Stage.MATURITY), RULES, [], False).bookings
    assert (booking.customer_id, booking.points, booking.rule) == ("C1", 500, Rule.LOYALTY_MATURITY)
    assert on_stage_changed(stage_changed(Stage.MATURITY), RULES, [], True).bookings == []
    assert on_stage_changed(stage_changed(Stage.GROWTH), RULES, [], False).bookings == []
    assert (
        on_stage_changed(stage_changed(Stage.MATURITY, "tier.changed"), RULES, [], False).bookings
        == []
    )


@pytest.mark.parametrize(
    ("tier", "points"), [(Tier.MASS, 100), (Tier.AFFLUENT, 200), (Tier.HNW, 500)]
)
def test_a_tenure_anniversary_pays_by_tier(tier: Tier, points: int) -> None:
    event = TenureAnniversary(
        event_id="a-1",
        type="tenure.anniversary",
        occurred_at=T,
        customer_id="C1",
        years=2,
        relationship_start=datetime(2024, 3, 10, 12, tzinfo=UTC),
        stage=Stage.MATURITY,
        tier=tier,
    )
    (booking,) = on_anniversary(event, RULES, []).bookings
    assert (booking.points, booking.rule) == (points, Rule.LOYALTY_ANNIVERSARY)
    assert "2 years" in booking.reason


def test_a_redemption_never_overdraws_and_waits_for_a_flag_review() -> None:
    booking = redeem("C1", 300, 300, False, "voucher")
    assert (booking.points, booking.kind) == (-300, EntryKind.REDEMPTION)
    with pytest.raises(RedemptionRefused) as refused:
        redeem("C1", 301, 300, False, "voucher")
    assert refused.value.code == "insufficient_balance" and "300 points" in refused.value.message
    with pytest.raises(RedemptionRefused) as flagged:
        redeem("C1", 1, 300, True, "voucher")
    assert flagged.value.code == "account_flagged"
