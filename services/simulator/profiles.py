"""Who the simulated population is made of and how noisy their lives are: the personas, and the
two population profiles a feed can be drawn from.

`standard` keeps the persona shares the figures were first measured on (the stable savers now
split into savers and pensioners) with the patterns of a real current account at moderate rates;
`varied` changes the shares of savers and pensioners, salaried, high-net-worth customers and of
the churn causes, and makes life noisier: more and longer holidays, stronger seasonal spending,
more one-off large payments and payroll runs that move by a few days. A rule tuned on one
profile is scored on the other too (docs/simulator.md, "The held-out evaluation").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Persona(StrEnum):
    STABLE_SAVER = "stable_saver"
    PENSIONER = "pensioner"
    SALARIED = "salaried"
    GROWING = "growing"
    HIGH_NET_WORTH = "high_net_worth"
    LATE_JOINER = "late_joiner"
    NEVER_ACTIVE = "never_active"
    CHURN_COMPETITOR = "churn_competitor_attraction"
    CHURN_DISSATISFIED = "churn_service_dissatisfaction"
    CHURN_DISTRESS = "churn_financial_distress"
    CHURN_DISENGAGED = "churn_disengagement"
    CONVERTED = "converted_counterparty"


CHURN_CAUSE = {
    Persona.CHURN_COMPETITOR: "competitor_attraction",
    Persona.CHURN_DISSATISFIED: "service_dissatisfaction",
    Persona.CHURN_DISTRESS: "financial_distress",
    Persona.CHURN_DISENGAGED: "disengagement",
}
# Their behaviour never changes: an at-risk flag on one is a false alarm.
STABLE = frozenset(
    {
        Persona.STABLE_SAVER,
        Persona.PENSIONER,
        Persona.SALARIED,
        Persona.GROWING,
        Persona.HIGH_NET_WORTH,
    }
)


@dataclass(frozen=True)
class Profile:
    """A population's make-up and the rates of the life events every account carries. Ranges
    are (low, high), drawn uniformly; amounts are in months of the household's income."""

    name: str
    # Share of the population per persona (exact quotas); converted counterparties and planted
    # fraud come on top.
    shares: tuple[tuple[Persona, float], ...]
    # Holidays without card spending: how many a year, and how long each (days).
    holidays: tuple[int, int]
    holiday_days: tuple[int, int]
    # The Spring Festival: households that give red packets and gifts, and how much; households
    # that travel, and what the trip costs.
    festival_gifts_share: float
    festival_gifts: tuple[float, float]
    festival_travel_share: float
    festival_travel: tuple[float, float]
    # A year-end bonus in January: the share of salaried customers who get one, and its size.
    bonus_share: float
    bonus: tuple[float, float]
    # School fees in September: the share of working families that pay them, and how much.
    school_share: float
    school_fees: tuple[float, float]
    # A one-off large payment (a car, a flat's deposit, a notary, tuition) by a share of the
    # stable customers: 30 to 80 % of the balance, to a business at another bank.
    one_off_share: float
    one_off_balance: tuple[float, float]
    # Payroll runs that move: the share of employers whose payday moves in some months, the
    # share of their months that it does, and by how many days at most.
    pay_shift_employers: float
    pay_shift_months: float
    pay_shift_days: int
    # Customers who take cash from ATMs for part of their spending.
    cash_share: float
    # A month of reduced pay (sick leave, unpaid leave, short-time work) for a share of the
    # stable households paid by an employer or a pension fund, and the share of the income paid
    # that month; the next month's pay is full again.
    reduced_pay_share: float = 0.0
    reduced_pay: tuple[float, float] = (0.4, 0.8)


STANDARD = Profile(
    name="standard",
    shares=(
        (Persona.STABLE_SAVER, 0.14),
        (Persona.PENSIONER, 0.06),
        (Persona.SALARIED, 0.28),
        (Persona.GROWING, 0.12),
        (Persona.HIGH_NET_WORTH, 0.03),
        (Persona.LATE_JOINER, 0.10),
        (Persona.NEVER_ACTIVE, 0.05),
        (Persona.CHURN_COMPETITOR, 0.06),
        (Persona.CHURN_DISSATISFIED, 0.06),
        (Persona.CHURN_DISTRESS, 0.05),
        (Persona.CHURN_DISENGAGED, 0.05),
    ),
    holidays=(1, 1),
    holiday_days=(7, 21),
    festival_gifts_share=0.6,
    festival_gifts=(0.15, 0.5),
    festival_travel_share=0.3,
    festival_travel=(0.15, 0.4),
    bonus_share=0.3,
    bonus=(1.0, 2.0),
    school_share=0.2,
    school_fees=(0.4, 1.2),
    one_off_share=0.08,
    one_off_balance=(0.3, 0.8),
    pay_shift_employers=0.0,
    pay_shift_months=0.0,
    pay_shift_days=0,
    cash_share=0.3,
)

VARIED = Profile(
    name="varied",
    shares=(
        (Persona.STABLE_SAVER, 0.11),
        (Persona.PENSIONER, 0.13),
        (Persona.SALARIED, 0.22),
        (Persona.GROWING, 0.08),
        (Persona.HIGH_NET_WORTH, 0.06),
        (Persona.LATE_JOINER, 0.10),
        (Persona.NEVER_ACTIVE, 0.05),
        (Persona.CHURN_COMPETITOR, 0.04),
        (Persona.CHURN_DISSATISFIED, 0.08),
        (Persona.CHURN_DISTRESS, 0.07),
        (Persona.CHURN_DISENGAGED, 0.06),
    ),
    holidays=(1, 3),
    holiday_days=(7, 28),
    festival_gifts_share=0.85,
    festival_gifts=(0.3, 1.2),
    festival_travel_share=0.5,
    festival_travel=(0.3, 1.0),
    bonus_share=0.5,
    bonus=(1.0, 4.0),
    school_share=0.3,
    school_fees=(0.8, 2.5),
    one_off_share=0.25,
    one_off_balance=(0.3, 0.8),
    pay_shift_employers=0.5,
    pay_shift_months=0.4,
    pay_shift_days=3,
    reduced_pay_share=0.15,
    cash_share=0.45,
)

PROFILES = {profile.name: profile for profile in (STANDARD, VARIED)}


def profile_named(name: str) -> Profile:
    """The profile of that name; a ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
