"""Rewards rules: what a referral or lifecycle event is worth, to whom, under which campaign and
within which caps. Plain functions over plain values: the service (`service.py`) reads the
facts they need from the ledger and books what they return. No I/O, no wall clock: months and
years are those of the event's own time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.lifecycle import Stage, StageChanged, TenureAnniversary, Tier
from schemas.referral import ReferralChanged
from schemas.rewards import EntryKind


class Rule(StrEnum):
    """Why points move; campaigns boost one of the crediting rules."""

    REFERRAL_REFERRER = "referral.referrer"
    REFERRAL_REFEREE = "referral.referee"
    LOYALTY_MATURITY = "loyalty.maturity"
    LOYALTY_ANNIVERSARY = "loyalty.anniversary"
    REDEMPTION = "redemption"
    ADJUSTMENT = "adjustment"


CREDITING_RULES = (
    Rule.REFERRAL_REFERRER,
    Rule.REFERRAL_REFEREE,
    Rule.LOYALTY_MATURITY,
    Rule.LOYALTY_ANNIVERSARY,
)


class WithholdReason(StrEnum):
    """Why a cap kept points back."""

    MONTHLY_POINTS_CAP = "monthly_referral_points_cap"
    YEARLY_REFERRALS_CAP = "yearly_rewarded_referrals_cap"


class RewardRules(BaseModel):
    """Point values and caps, with the defaults of issue 6; overridden by RAPPORT_REWARDS_*."""

    model_config = ConfigDict(frozen=True)

    referrer_points: Annotated[int, Field(ge=0)] = 200
    referee_points: Annotated[int, Field(ge=0)] = 100
    monthly_referral_points_cap: Annotated[int, Field(ge=0)] = 2000
    yearly_rewarded_referrals_cap: Annotated[int, Field(ge=0)] = 10
    maturity_points: Annotated[int, Field(ge=0)] = 500
    anniversary_points_mass: Annotated[int, Field(ge=0)] = 100
    anniversary_points_affluent: Annotated[int, Field(ge=0)] = 200
    anniversary_points_hnw: Annotated[int, Field(ge=0)] = 500

    def anniversary_points(self, tier: Tier) -> int:
        """The anniversary reward of a tier."""
        return {
            Tier.MASS: self.anniversary_points_mass,
            Tier.AFFLUENT: self.anniversary_points_affluent,
            Tier.HNW: self.anniversary_points_hnw,
        }[tier]


class Campaign(BaseModel):
    """A time-boxed boost of one rule: points = base x multiplier + bonus, for events whose
    time falls in [starts_at, ends_at). Where campaigns overlap, the customer gets the best."""

    model_config = ConfigDict(frozen=True)

    campaign_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    rule: Rule
    multiplier: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)] = Decimal(1)
    bonus_points: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    active: bool = True

    @model_validator(mode="after")
    def _check(self) -> Campaign:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.rule not in CREDITING_RULES:
            raise ValueError(f"a campaign boosts one of {', '.join(CREDITING_RULES)}")
        return self

    def applies(self, rule: Rule, at: datetime) -> bool:
        """Whether the campaign boosts this rule at this event time."""
        return self.active and self.rule is rule and self.starts_at <= at < self.ends_at

    def points(self, base: int) -> int:
        """The boosted amount, rounded half up to whole points."""
        boosted = Decimal(base) * self.multiplier + self.bonus_points
        return int(boosted.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def priced(
    rule: Rule, base: int, at: datetime, campaigns: list[Campaign]
) -> tuple[int, str | None]:
    """Points for `rule` at event time `at`, and the campaign that set them (None: the base)."""
    best, chosen = base, None
    for campaign in sorted(campaigns, key=lambda c: c.campaign_id):
        if campaign.applies(rule, at) and campaign.points(base) > best:
            best, chosen = campaign.points(base), campaign.campaign_id
    return best, chosen


@dataclass(frozen=True)
class Booking:
    """An entry the ledger is to book: positive points credit, negative points debit."""

    customer_id: str
    points: int
    kind: EntryKind
    rule: Rule
    reason: str
    campaign_id: str | None = None
    referral_id: str | None = None


@dataclass(frozen=True)
class Withholding:
    """Points a cap kept back: recorded with the reason, never silently dropped."""

    customer_id: str
    points: int
    rule: Rule
    reason_code: WithholdReason
    reason: str
    referral_id: str | None = None


@dataclass
class Decision:
    """What one event does to the ledger."""

    bookings: list[Booking] = field(default_factory=list)
    withholdings: list[Withholding] = field(default_factory=list)


@dataclass(frozen=True)
class ReferrerHistory:
    """A referrer's referral rewards so far, net of reversals, in the event's calendar month
    and year."""

    points_this_month: int
    rewarded_this_year: int


@dataclass(frozen=True)
class ReferrerCredit:
    """One of a referrer's referral entries: the credit, or a later reversal of it."""

    referral_id: str | None
    kind: EntryKind
    points: int
    occurred_at: datetime


def referrer_history(credits: Iterable[ReferrerCredit], at: datetime) -> ReferrerHistory:
    """The referrer's referral credits made in the calendar month and year of `at`, each net
    of its later reversal: a reversed referral frees its room under the caps."""
    credited_at: dict[str | None, datetime] = {}
    net: dict[str | None, int] = defaultdict(int)
    for credit in credits:
        net[credit.referral_id] += credit.points
        if credit.kind is EntryKind.CREDIT:
            credited_at[credit.referral_id] = credit.occurred_at
    month = sum(net[r] for r, t in credited_at.items() if (t.year, t.month) == (at.year, at.month))
    year = sum(1 for r, t in credited_at.items() if t.year == at.year and net[r] > 0)
    return ReferrerHistory(points_this_month=month, rewarded_this_year=year)


def on_referral_qualified(
    event: ReferralChanged,
    rules: RewardRules,
    campaigns: list[Campaign],
    history: ReferrerHistory | None,
) -> Decision:
    """Welcome points to the referee; referral points to the referrer within the caps. A
    referral with no referrer (none known) rewards the referee only."""
    at = event.occurred_at
    decision = Decision()
    welcome, welcome_campaign = priced(Rule.REFERRAL_REFEREE, rules.referee_points, at, campaigns)
    if welcome > 0:
        decision.bookings.append(
            Booking(
                event.referee,
                welcome,
                EntryKind.CREDIT,
                Rule.REFERRAL_REFEREE,
                "welcome reward for joining through a referral",
                welcome_campaign,
                event.referral_id,
            )
        )
    if event.referrer is None or history is None:
        return decision
    points, campaign = priced(Rule.REFERRAL_REFERRER, rules.referrer_points, at, campaigns)
    if history.rewarded_this_year >= rules.yearly_rewarded_referrals_cap:
        decision.withholdings.append(
            Withholding(
                event.referrer,
                points,
                Rule.REFERRAL_REFERRER,
                WithholdReason.YEARLY_REFERRALS_CAP,
                f"{history.rewarded_this_year} referrals already rewarded in {at.year}; the cap "
                f"is {rules.yearly_rewarded_referrals_cap} a year",
                event.referral_id,
            )
        )
        return decision
    room = max(rules.monthly_referral_points_cap - history.points_this_month, 0)
    credited = min(points, room)
    if credited > 0:
        decision.bookings.append(
            Booking(
                event.referrer,
                credited,
                EntryKind.CREDIT,
                Rule.REFERRAL_REFERRER,
                f"referral reward: {event.referee} qualified",
                campaign,
                event.referral_id,
            )
        )
    if credited < points:
        decision.withholdings.append(
            Withholding(
                event.referrer,
                points - credited,
                Rule.REFERRAL_REFERRER,
                WithholdReason.MONTHLY_POINTS_CAP,
                f"{history.points_this_month} referral points already credited in "
                f"{at:%Y-%m}; the cap is {rules.monthly_referral_points_cap} a month",
                event.referral_id,
            )
        )
    return decision


@dataclass(frozen=True)
class Credited:
    """What a referral's credits left standing for one customer and rule."""

    customer_id: str
    rule: Rule
    points: int


def on_referral_reversed(event: ReferralChanged, standing: list[Credited]) -> Decision:
    """Reverse whatever the referral's credits still stand at, for both sides; never delete."""
    return Decision(
        bookings=[
            Booking(
                c.customer_id,
                -c.points,
                EntryKind.REVERSAL,
                c.rule,
                f"clawback: referral {event.referral_id} reversed "
                f"({event.reason or event.reason_code or 'early exit'})",
                None,
                event.referral_id,
            )
            for c in standing
            if c.points > 0
        ]
    )


def on_stage_changed(
    event: StageChanged, rules: RewardRules, campaigns: list[Campaign], matured_before: bool
) -> Decision:
    """The first entry into maturity earns the maturity reward, once per customer."""
    if event.type != "stage.changed" or event.stage is not Stage.MATURITY or matured_before:
        return Decision()
    points, campaign = priced(
        Rule.LOYALTY_MATURITY, rules.maturity_points, event.occurred_at, campaigns
    )
    return Decision(
        bookings=[
            Booking(
                event.customer_id,
                points,
                EntryKind.CREDIT,
                Rule.LOYALTY_MATURITY,
                "loyalty reward: first time in the maturity stage",
                campaign,
            )
        ]
        if points > 0
        else []
    )


def on_anniversary(
    event: TenureAnniversary, rules: RewardRules, campaigns: list[Campaign]
) -> Decision:
    """A tenure anniversary earns the reward of the tier the customer was in on the day."""
    points, campaign = priced(
        Rule.LOYALTY_ANNIVERSARY,
        rules.anniversary_points(event.tier),
        event.occurred_at,
        campaigns,
    )
    years = "year" if event.years == 1 else "years"
    return Decision(
        bookings=[
            Booking(
                event.customer_id,
                points,
                EntryKind.CREDIT,
                Rule.LOYALTY_ANNIVERSARY,
                f"loyalty reward: {event.years} {years} with the bank ({event.tier.value} tier)",
                campaign,
            )
        ]
        if points > 0
        else []
    )


class RedemptionRefused(Exception):
    """A redemption that cannot be booked, with what a person should be told."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def redeem(customer_id: str, points: int, balance: int, flagged: bool, what: str) -> Booking:
    """A redemption debit, or RedemptionRefused: never a balance below zero from a redemption,
    nothing redeemed from an account under review."""
    if flagged:
        raise RedemptionRefused(
            "account_flagged",
            f"customer {customer_id}'s rewards account is flagged for review; redemptions wait "
            "until an administrator clears it",
        )
    if points > balance:
        raise RedemptionRefused(
            "insufficient_balance",
            f"customer {customer_id} has {balance} points; {points} cannot be redeemed",
        )
    return Booking(customer_id, -points, EntryKind.REDEMPTION, Rule.REDEMPTION, f"redeemed: {what}")
