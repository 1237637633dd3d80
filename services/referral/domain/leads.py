"""Step 1, per counterparty (keyed by its keyed hash): the ties of our customers to an external
account over the lead window, the lead it becomes, the kind of counterparty it is, and whether a
new customer's first funding came from a lead's account (a chain conversion)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.account_events import CounterpartyKind
from schemas.referral import (
    Direction,
    LeadChanged,
    LeadStrength,
    LeadType,
)
from services.referral.domain.rules import ReferralRules, content_id, working_state

# What a payment's purpose says of the payee, or an income's of the payer, where the feed gives
# no kind: utilities, insurers and lenders are businesses, the tax office and benefit and
# pension payers the state, an employer a business.
KIND_BY_PURPOSE: dict[str, CounterpartyKind] = {
    "bill": "business",
    "utilities": "business",
    "insurance": "business",
    "loan_repayment": "business",
    "investment": "business",
    "tax": "government",
    "salary": "business",
    "pension": "government",
    "benefit": "government",
}
# Payments to institutions, not to prospects a customer could introduce: a utility, an
# insurer, a lender or the tax office is never a referral lead.
INSTITUTION_PURPOSES = frozenset({"bill", "utilities", "insurance", "loan_repayment", "tax"})

# -- 1. counterparties and leads ---------------------------------------------------------------


class Link(BaseModel):
    """A transfer between one of our customers and an external account, sent to the
    counterparty's key. `funding` marks a transfer in to a new customer in their first days who
    has no referrer yet: a possible chain conversion, not a tie."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    occurred_at: datetime
    customer_id: str
    counterparty_key: str
    # Declared by the feed as a business (links made before kinds were known carry only this).
    business: bool
    direction: Literal["in", "out"]
    amount: Decimal
    funding: bool = False
    # What the feed says of the counterparty, when it does: its kind, the payment's purpose,
    # and whether it is the customer's own account.
    kind: CounterpartyKind | None = None
    purpose: str | None = None
    own_account: bool = False


class Tie(BaseModel):
    at: datetime
    customer_id: str
    amount: Decimal
    direction: Literal["in", "out"]
    event_id: str
    purpose: str | None = None


class Lead(BaseModel):
    lead_id: str
    detected_at: datetime
    referrer: str
    lead_type: LeadType
    strength: tuple[int, int]
    updated_day: int
    score: float = 0.0


class CounterpartyState(BaseModel):
    key: str
    business: bool = False
    # The kind the feed declared (the latest declared), if it ever did.
    kind: CounterpartyKind | None = None
    ties: list[Tie] = []
    lead: Lead | None = None
    last_at: datetime | None = None
    seen: list[str] = []  # recent event ids: duplicates change nothing
    # Links received but not yet applied: the service applies them in event-time order once
    # every input partition has passed their day.
    pending: list[Link] = []


class ChainMatch(BaseModel):
    """A new customer funded from a lead's account: attribute to the lead's referrer."""

    model_config = ConfigDict(frozen=True)

    referee: str
    referrer: str
    counterparty_key: str
    lead_type: LeadType
    occurred_at: datetime


@dataclass
class CounterpartyOutcome:
    state: CounterpartyState
    leads: list[LeadChanged] = field(default_factory=list)
    matches: list[ChainMatch] = field(default_factory=list)


def _strongest(ties: list[Tie]) -> str:
    """Most transactions, then the larger amount, then the smaller id (for a stable answer)."""
    totals: dict[str, tuple[int, Decimal]] = {}
    for tie in ties:
        count, amount = totals.get(tie.customer_id, (0, Decimal(0)))
        totals[tie.customer_id] = (count + 1, amount + tie.amount)
    return min(totals, key=lambda c: (-totals[c][0], -totals[c][1], c))


def _direction(ties: list[Tie]) -> Direction:
    kinds = {t.direction for t in ties}
    if kinds == {"in"}:
        return Direction.PAID_BY
    if kinds == {"out"}:
        return Direction.PAID_TO
    return Direction.BOTH


def link(
    state: CounterpartyState | None, event: Link, rules: ReferralRules, *, owned: bool = False
) -> CounterpartyOutcome:
    """Apply one transfer to a counterparty: update the ties, detect or update its lead, or
    match a funding transfer to it. `owned`: the caller will not use `state` again, so it may
    be changed in place instead of copied."""
    state = working_state(state, lambda: CounterpartyState(key=event.counterparty_key), owned)
    out = CounterpartyOutcome(state)
    if event.event_id in state.seen or any(x.event_id == event.event_id for x in state.ties):
        return out
    state.seen = [*state.seen, event.event_id][-20:]
    t = event.occurred_at
    expire(state, out, t, rules)
    if event.funding:
        if state.lead is not None and not _payroll(state):
            # The strongest tie over the window ending now; the lead's own referrer when every
            # tie is older than the window (the lead is still alive for 180 days).
            window = [x for x in state.ties if x.at > t - timedelta(days=rules.lead_window_days)]
            out.matches.append(
                ChainMatch(
                    referee=event.customer_id,
                    referrer=_strongest(window) if window else state.lead.referrer,
                    counterparty_key=state.key,
                    lead_type=state.lead.lead_type,
                    occurred_at=t,
                )
            )
        return out

    if event.own_account:
        # The customer's own account elsewhere: not a prospect, and not a tie to one.
        return out
    state.business = state.business or event.business
    if event.kind not in (None, "unknown"):
        state.kind = event.kind
    since = t - timedelta(days=rules.lead_window_days)
    state.ties = [x for x in state.ties if x.at > since] + [
        Tie(
            at=t,
            customer_id=event.customer_id,
            amount=event.amount,
            direction=event.direction,
            event_id=event.event_id,
            purpose=event.purpose,
        )
    ]
    state.ties.sort(key=lambda x: (x.at, x.event_id))
    state.last_at = max(state.last_at or t, t)
    customers = len({x.customer_id for x in state.ties})
    transactions = len(state.ties)
    if transactions < rules.lead_min_transactions and customers < rules.lead_min_customers:
        return out
    kind, _ = counterparty_kind(state, rules)
    if kind == "government" or any(x.purpose in INSTITUTION_PURPOSES for x in state.ties):
        # The tax office, a pension fund, a utility or an insurer is nobody's prospect.
        return out
    lead_type = LeadType.CORPORATE if kind == "business" else LeadType.RETAIL
    referrer = _strongest(state.ties)
    strength = (transactions, customers)
    score = lead_score(state.ties, t, rules)
    day = t.toordinal()
    if state.lead is None:
        if score < rules.lead_min_score:
            return out
        state.lead = Lead(
            lead_id=content_id("lead", state.key, t.isoformat()),
            detected_at=t,
            referrer=referrer,
            lead_type=lead_type,
            strength=strength,
            updated_day=day,
            score=score,
        )
        out.leads.append(_lead_event("lead.detected", state, t, rules))
    elif (referrer, strength, lead_type) != (
        state.lead.referrer,
        state.lead.strength,
        state.lead.lead_type,
    ) and day > state.lead.updated_day:
        state.lead = state.lead.model_copy(
            update={
                "referrer": referrer,
                "strength": strength,
                "lead_type": lead_type,
                "updated_day": day,
                "score": score,
            }
        )
        out.leads.append(_lead_event("lead.updated", state, t, rules))
    return out


def lead_score(ties: list[Tie], t: datetime, rules: ReferralRules) -> float:
    """How promising a lead is, 0-100, for ranking an RM's list: how regularly one customer
    pays or is paid by it (monthly, like rent or a salary: 35), how many of our customers are
    tied to it (25), how much money flows (20), and how recent the last tie is (20)."""
    if not ties:
        return 0.0
    months: dict[str, set[int]] = {}
    for tie in ties:
        months.setdefault(tie.customer_id, set()).add(tie.at.year * 12 + tie.at.month)
    regular = min(max(len(m) for m in months.values()), 3) / 3
    # Beyond a handful of customers each one more still counts, for less (an employer paying
    # twenty of our customers is a better prospect than a landlord paid by four).
    customers = min(math.log2(1 + len(months)) / 4, 1.0)
    total = float(sum((x.amount for x in ties), Decimal(0)))
    amount = min(math.log10(1 + total) / 6, 1.0)
    days_since = (t - max(x.at for x in ties)).total_seconds() / 86400
    recent = max(0.0, 1 - days_since / rules.lead_window_days)
    return round(100 * (0.35 * regular + 0.25 * customers + 0.2 * amount + 0.2 * recent), 1)


def counterparty_kind(
    state: CounterpartyState, rules: ReferralRules
) -> tuple[CounterpartyKind, str]:
    """The counterparty's kind and what says so: the feed when it declared one, else the
    evidence of the ties (most feeds give a bank code and an account, nothing more)."""
    if state.kind is not None:
        return state.kind, "declared by the core-banking feed"
    if state.business:
        return "business", "declared by the core-banking feed"
    for tie in reversed(state.ties):
        if tie.purpose in KIND_BY_PURPOSE:
            return KIND_BY_PURPOSE[tie.purpose], f"inferred: payments marked {tie.purpose}"
    customers = {x.customer_id for x in state.ties}
    if len(customers) >= rules.corporate_min_customers:
        paid = "pays" if all(x.direction == "in" for x in state.ties) else "is paid by"
        return "business", f"inferred: {paid} {len(customers)} customers"
    if _paid_monthly(state.ties):
        return "business", "inferred: a monthly credit of similar amount, like a salary or pension"
    return "unknown", "nothing in the feed says what it is"


def _paid_monthly(ties: list[Tie]) -> set[str]:
    """The customers the counterparty credits in consecutive months with similar amounts."""
    by_customer: dict[str, list[Tie]] = {}
    for tie in ties:
        if tie.direction == "in":
            by_customer.setdefault(tie.customer_id, []).append(tie)
    return {
        customer
        for customer, credits in by_customer.items()
        if any(
            (b.at.year * 12 + b.at.month) - (a.at.year * 12 + a.at.month) == 1
            and abs(b.amount - a.amount) <= a.amount / 5
            for a, b in itertools.pairwise(credits)
        )
    }


def _payroll(state: CounterpartyState) -> bool:
    """A payer of monthly credits to two or more of our customers: an employer or a pension
    payer. Money from it to a new customer is a first salary or pension, marked or not (most
    payroll feeds give no purpose), never the payer moving its own money in."""
    return len(_paid_monthly(state.ties)) >= 2


def lead_expires_at(state: CounterpartyState, rules: ReferralRules) -> datetime | None:
    """When the live lead lapses if no transaction comes first; None without a lead."""
    if state.lead is None or state.last_at is None:
        return None
    return state.last_at + timedelta(days=rules.lead_expiry_days)


def expire(
    state: CounterpartyState, out: CounterpartyOutcome, now: datetime, rules: ReferralRules
) -> None:
    """Lapse the lead if it expired before `now`, with `lead.expired` dated at its expiry:
    the same event whether the next transaction or the passing of time finds it first."""
    expires_at = lead_expires_at(state, rules)
    if expires_at is None or expires_at >= now:
        return
    out.leads.append(_lead_event("lead.expired", state, expires_at, rules))
    state.lead = None
    # Every tie is older than the window by now: nothing to keep but the key.
    state.ties = []


def _lead_event(
    kind: Literal["lead.detected", "lead.updated", "lead.expired"],
    state: CounterpartyState,
    t: datetime,
    rules: ReferralRules,
) -> LeadChanged:
    lead = state.lead
    assert lead is not None and state.last_at is not None
    cp_kind, basis = counterparty_kind(state, rules)
    return LeadChanged(
        event_id=content_id(kind, lead.lead_id, t.isoformat()),
        type=kind,
        occurred_at=t,
        lead_id=lead.lead_id,
        counterparty_key=state.key,
        lead_type=lead.lead_type,
        suggested_referrer=lead.referrer,
        strength=LeadStrength(
            transactions=lead.strength[0],
            customers=lead.strength[1],
            amount=sum((x.amount for x in state.ties), Decimal(0)),
            direction=_direction(state.ties),
            window_days=rules.lead_window_days,
        ),
        last_transaction_at=state.last_at,
        expires_at=state.last_at + timedelta(days=rules.lead_expiry_days),
        evidence_event_ids=[x.event_id for x in state.ties[-10:]],
        counterparty_kind=cp_kind,
        kind_basis=basis,
        score=lead.score,
    )
