"""Referral rules, pure: state and event in, state and events out; no faust, no I/O.

Three keyed steps, because the facts a decision needs live with different keys:

1. per counterparty (`CounterpartyState`, keyed by the counterparty's keyed hash): the ties of our
   customers to an external account over the lead window, the lead it becomes, and whether a
   new customer's first funding came from a lead's account (a chain conversion);
2. per referee (`CustomerReferralState`, keyed by customer): the new customer's opening, the
   candidate referrer (by code, else by chain), qualification, early exit;
3. per referrer (the same `CustomerReferralState`, as a referrer): the fraud guards that need
   the referrer's own facts (phone and device hashes, its upline, its recent referrals).

The adapter moves `Link`, `Candidate` and `Decision` records between the steps through internal
topics keyed by the next step's key, so any number of workers gives the same answers.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.account_events import CounterpartyKind, InstitutionCodes
from schemas.referral import (
    Direction,
    LeadChanged,
    LeadStrength,
    LeadType,
    ReferralChanged,
    ReferralReason,
)

_NAMESPACE = uuid.UUID("6f1c2a3e-0d4b-5c6e-9f70-8a1b2c3d4e5f")
DEFAULT_HOME_BANK_CODES = frozenset({"RAPPORTBANK"})
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


class ReferralRules(BaseModel):
    """Every threshold of the referral policy; defaults as in docs/referral.md."""

    model_config = ConfigDict(frozen=True)

    # The bank's own institution codes (several after a merger).
    home_bank_codes: InstitutionCodes = DEFAULT_HOME_BANK_CODES
    lead_window_days: int = Field(90, ge=1)
    lead_min_transactions: int = Field(3, ge=1)
    lead_min_customers: int = Field(2, ge=1)
    corporate_min_customers: int = Field(3, ge=1)
    lead_expiry_days: int = Field(180, ge=1)
    code_validity_days: int = Field(365, ge=1)
    chain_funding_days: int = Field(30, ge=1)
    qualify_within_days: int = Field(30, ge=1)
    qualify_deposit: Decimal = Decimal("1000")
    qualify_transactions: int = Field(3, ge=1)
    velocity_limit: int = Field(10, ge=1)
    velocity_window_days: int = Field(30, ge=1)
    early_exit_days: int = Field(90, ge=1)


S = TypeVar("S", bound=BaseModel)


def _working(state: S | None, new: Callable[[], S], owned: bool) -> S:
    """The state a rule changes: a new one, the caller's own (`owned`: a state loaded for this
    call, changed in place), or a deep copy that leaves the caller's as it was."""
    if state is None:
        return new()
    return state if owned else state.model_copy(deep=True)


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def referral_id(referee: str, opened_at: datetime) -> str:
    """One referral per referee and opening: the same input always gives the same id."""
    return _id("referral", referee, opened_at.isoformat())


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
    state = _working(state, lambda: CounterpartyState(key=event.counterparty_key), owned)
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
    if kind == "government":
        # The tax office, a pension fund or a benefits agency is nobody's prospect.
        return out
    lead_type = LeadType.CORPORATE if kind == "business" else LeadType.RETAIL
    referrer = _strongest(state.ties)
    strength = (transactions, customers)
    day = t.toordinal()
    if state.lead is None:
        state.lead = Lead(
            lead_id=_id("lead", state.key, t.isoformat()),
            detected_at=t,
            referrer=referrer,
            lead_type=lead_type,
            strength=strength,
            updated_day=day,
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
            }
        )
        out.leads.append(_lead_event("lead.updated", state, t, rules))
    return out


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
        event_id=_id(kind, lead.lead_id, t.isoformat()),
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
    )


# -- 2. referees -------------------------------------------------------------------------------


class Candidate(BaseModel):
    """A referral to decide, sent to the referrer's key."""

    model_config = ConfigDict(frozen=True)

    referral_id: str
    referrer: str
    referee: str
    via: Literal["code", "chain"]
    lead_type: LeadType
    occurred_at: datetime
    channel: str | None = None
    counterparty_key: str | None = None
    referee_hashes: tuple[str, ...] = ()
    # Sent again when the referee's phone or device hashes arrive after the opening (they come
    # with a later customer.updated): only the shared-hash guard is checked again.
    recheck: bool = False


class Decision(BaseModel):
    """The referrer side's answer, sent back to the referee's key."""

    model_config = ConfigDict(frozen=True)

    candidate: Candidate
    outcome: Literal["attributed", "held", "rejected"]
    reason_code: ReferralReason | None = None
    reason: str | None = None
    # The referrer's own referrer chain, so the referee can carry its upline on (ring checks).
    upline: tuple[str, ...] = ()
    # Money from these sources does not count toward the referee's qualifying deposit.
    referrer_accounts: tuple[str, ...] = ()
    referrer_counterparties: tuple[str, ...] = ()


def referral_event(
    kind: str,
    candidate: Candidate,
    t: datetime,
    **fields: object,
) -> ReferralChanged:
    return ReferralChanged(
        event_id=_id(kind, candidate.referral_id),
        type=kind,
        occurred_at=t,
        referral_id=candidate.referral_id,
        referrer=candidate.referrer,
        referee=candidate.referee,
        via=candidate.via,
        lead_type=candidate.lead_type,
        channel=candidate.channel,
        counterparty_key=candidate.counterparty_key,
        **fields,
    )


class CodeGrant(BaseModel):
    """What the code registry knows of a referral code."""

    model_config = ConfigDict(frozen=True)

    owner: str
    issued_at: datetime


class CustomerReferralState(BaseModel):
    """One customer, as a referee (the opening, its referral, qualification) and as a referrer
    (the facts the fraud guards need)."""

    customer_id: str
    opened_at: datetime | None = None
    open_accounts: list[str] = []
    hashes: list[str] = []  # phone and device hashes from customer.updated
    accounts: list[str] = []  # every account ever opened here
    counterparties: list[str] = []  # recent external accounts, keyed hashes
    upline: list[str] = []  # who referred this customer, and who referred them
    referred: list[tuple[datetime, str]] = []  # (attributed at, referee), as a referrer
    decided: list[str] = []  # referral ids decided as a referrer: redeliveries change nothing
    # Referrals this customer let through as a referrer, with the referee's hashes as last
    # known: checked again when this customer's own phone or device hashes arrive later.
    vouched: list[Candidate] = []
    channel: str | None = None
    candidate: Candidate | None = None
    # A recheck of new phone or device hashes is on its way: no qualifying until it is back.
    rechecking: bool = False
    status: Literal["pending", "attributed", "held", "rejected", "qualified", "reversed"] | None = (
        None
    )
    qualified_at: datetime | None = None
    # Money in during the qualifying window, with its time and source: whether the referrer
    # funded it is known only once the decision arrives, which may be after the money, so
    # qualification is worked out from these in event-time order, whenever the decision comes.
    money_in: list[tuple[datetime, Decimal, str | None, str | None]] = []
    # Times of customer-initiated transactions in the qualifying window.
    transacted: list[datetime] = []
    # As a referrer: candidates waiting until every earlier one has arrived (steps watermarks),
    # to be decided in event-time order.
    awaiting: list[Candidate] = []
    excluded_accounts: list[str] = []
    excluded_counterparties: list[str] = []
    seen: list[str] = []


@dataclass
class RefereeOutcome:
    state: CustomerReferralState
    events: list[ReferralChanged] = field(default_factory=list)
    # Answers this customer owes as a referrer (a shared device found after the fact).
    decisions: list[Decision] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


@dataclass(frozen=True)
class Movement:
    """What the referee step needs of an account event; the adapter builds it from the
    contract, keying the counterparty (it never sees account numbers of other banks)."""

    event_id: str
    event_type: str
    occurred_at: datetime
    account_id: str | None = None
    amount: Decimal = Decimal(0)
    channel: str | None = None
    referral_code: str | None = None
    counterparty_key: str | None = None
    counterparty_own_bank_account: str | None = None  # a transfer within the bank
    counterparty_business: bool = False
    counterparty_kind: CounterpartyKind | None = None
    # The customer's own account at another bank, as the feed says.
    counterparty_own_account: bool = False
    purpose: str | None = None
    income: bool = False  # salary, pension or benefit: the payer's money, not the customer's
    # Chosen by the customer now: not interest, fees or payments on a standing instruction.
    initiated: bool = False
    hashes: tuple[str, ...] = ()


MONEY_IN = frozenset({"deposit", "transfer.in"})


def on_account_event(
    state: CustomerReferralState | None,
    customer_id: str,
    event: Movement,
    code: CodeGrant | None,
    rules: ReferralRules,
    *,
    owned: bool = False,
) -> RefereeOutcome:
    """One account event of a customer, as a possible referee (and as a referrer's tie).
    `owned`: the caller will not use `state` again, so it may be changed in place."""
    state = _working(state, lambda: CustomerReferralState(customer_id=customer_id), owned)
    out = RefereeOutcome(state)
    if event.event_id in state.seen:
        return out
    state.seen = [*state.seen, event.event_id][-50:]
    t = event.occurred_at
    kind = event.event_type

    if kind == "customer.updated":
        new = set(event.hashes) - set(state.hashes)
        state.hashes = sorted({*state.hashes, *event.hashes})[-21:]
        _recheck_vouched(state, out, new)
        candidate = state.candidate
        if (
            candidate is not None
            and state.status in ("pending", "attributed")
            and set(state.hashes) - set(candidate.referee_hashes)
        ):
            state.candidate = candidate.model_copy(update={"referee_hashes": tuple(state.hashes)})
            state.rechecking = True
            # Dated at the profile change, not at the referral: it is made now, and the
            # referrer decides candidates in event-time order (docs/referral.md).
            out.candidates.append(
                state.candidate.model_copy(update={"recheck": True, "occurred_at": t})
            )
        return out
    if kind == "account.opened":
        if not state.open_accounts:
            _new_relationship(state, out, customer_id, event, code, rules)
        if event.account_id and event.account_id not in state.open_accounts:
            state.open_accounts.append(event.account_id)
        if event.account_id and event.account_id not in state.accounts:
            state.accounts = [*state.accounts, event.account_id][-20:]
        return out
    if kind == "account.closed":
        if event.account_id in state.open_accounts:
            state.open_accounts.remove(event.account_id)
        if (
            not state.open_accounts
            and state.status == "qualified"
            and state.candidate is not None
            and state.qualified_at is not None
            and t - state.qualified_at <= timedelta(days=rules.early_exit_days)
        ):
            state.status = "reversed"
            out.events.append(
                referral_event(
                    "referral.reversed",
                    state.candidate,
                    t,
                    reason_code=ReferralReason.EARLY_EXIT,
                    reason=f"the referee closed the last account within {rules.early_exit_days} "
                    "days of qualifying",
                )
            )
        return out

    if event.counterparty_key is not None and kind in ("transfer.in", "transfer.out"):
        state.counterparties = [
            *[c for c in state.counterparties if c != event.counterparty_key],
            event.counterparty_key,
        ][-20:]
        # A prospect converts by moving their own money in; a first salary from an employer
        # that our customers know is a new hire, not a conversion (it stays a tie).
        funding = (
            kind == "transfer.in"
            and not event.income
            and state.candidate is None
            and state.opened_at is not None
            and t - state.opened_at <= timedelta(days=rules.chain_funding_days)
        )
        out.links.append(
            Link(
                event_id=event.event_id,
                occurred_at=t,
                customer_id=customer_id,
                counterparty_key=event.counterparty_key,
                business=event.counterparty_business,
                direction="in" if kind == "transfer.in" else "out",
                amount=event.amount,
                funding=funding,
                kind=event.counterparty_kind,
                purpose=event.purpose,
                own_account=event.counterparty_own_account,
            )
        )
    if state.opened_at is None or t - state.opened_at > timedelta(days=rules.qualify_within_days):
        return out
    if kind in MONEY_IN:
        state.money_in = [
            *state.money_in,
            (t, event.amount, event.counterparty_own_bank_account, event.counterparty_key),
        ][-100:]
    if event.initiated:
        state.transacted = [*state.transacted, t][-100:]
    _qualify(state, out, rules)
    return out


def _recheck_vouched(state: CustomerReferralState, out: RefereeOutcome, new: set[str]) -> None:
    """The referrer's phone or device hashes came after referrals it let through (in a replay,
    its partition may lag the referee's): a referee sharing one is rejected now, or its
    referral reversed if it qualified meanwhile."""
    if not new:
        return
    caught = [c for c in state.vouched if set(c.referee_hashes) & new]
    if not caught:
        return
    state.vouched = [c for c in state.vouched if c not in caught]
    for candidate in caught:
        out.decisions.append(
            Decision(
                candidate=candidate.model_copy(update={"recheck": True}),
                outcome="rejected",
                reason_code=ReferralReason.SHARED_PHONE_OR_DEVICE,
                reason="the referee shares a phone number or device with the referrer",
            )
        )


def _new_relationship(
    state: CustomerReferralState,
    out: RefereeOutcome,
    customer_id: str,
    event: Movement,
    code: CodeGrant | None,
    rules: ReferralRules,
) -> None:
    """A first opening (or a return after closing every account): a possible referee."""
    t = event.occurred_at
    state.opened_at = t
    state.channel = event.channel
    state.candidate = None
    state.status = None
    state.qualified_at = None
    state.money_in = []
    state.transacted = []
    if not event.referral_code:
        return
    candidate = Candidate(
        referral_id=referral_id(customer_id, t),
        referrer=code.owner if code else "",
        referee=customer_id,
        via="code",
        lead_type=LeadType.RETAIL,
        occurred_at=t,
        channel=event.channel,
        referee_hashes=tuple(state.hashes),
    )
    state.candidate = candidate
    if code is None:
        state.status = "rejected"
        out.events.append(
            referral_event(
                "referral.rejected",
                candidate.model_copy(update={"referrer": None}),
                t,
                reason_code=ReferralReason.CODE_UNKNOWN,
                reason="the referral code given at opening was never issued",
            )
        )
    elif t - code.issued_at > timedelta(days=rules.code_validity_days) or t < code.issued_at:
        state.status = "rejected"
        out.events.append(
            referral_event(
                "referral.rejected",
                candidate,
                t,
                reason_code=ReferralReason.CODE_EXPIRED,
                reason=f"the referral code was issued on {code.issued_at.date()} and is valid "
                f"for {rules.code_validity_days} days",
            )
        )
    else:
        state.status = "pending"
        out.candidates.append(candidate)


def on_chain_match(state: CustomerReferralState | None, match: ChainMatch) -> RefereeOutcome:
    """A funding transfer matched a lead: the lead's referrer is the candidate, unless a code
    came first (an explicit code wins over a chain tie)."""
    state = _working(state, lambda: CustomerReferralState(customer_id=match.referee), False)
    out = RefereeOutcome(state)
    if state.candidate is not None or state.opened_at is None:
        return out
    candidate = Candidate(
        referral_id=referral_id(match.referee, state.opened_at),
        referrer=match.referrer,
        referee=match.referee,
        via="chain",
        lead_type=match.lead_type,
        occurred_at=match.occurred_at,
        channel=state.channel,
        counterparty_key=match.counterparty_key,
        referee_hashes=tuple(state.hashes),
    )
    state.candidate = candidate
    state.status = "pending"
    # The prospect's own money from the lead's account is what the chain saw, not a deposit
    # the referrer can be rewarded for.
    state.excluded_counterparties = [match.counterparty_key]
    out.candidates.append(candidate)
    return out


def on_decision(
    state: CustomerReferralState | None, decision: Decision, rules: ReferralRules
) -> RefereeOutcome:
    """The referrer side's answer: publish it, and check qualification at once (money may have
    arrived while the decision travelled)."""
    candidate = decision.candidate
    state = _working(state, lambda: CustomerReferralState(customer_id=candidate.referee), False)
    out = RefereeOutcome(state)
    if state.candidate is None or state.candidate.referral_id != candidate.referral_id:
        return out
    if candidate.recheck:
        state.rechecking = False
        if decision.outcome == "rejected" and state.status == "qualified":
            # Found after the referee qualified: the reward is clawed back.
            state.status = "reversed"
            out.events.append(
                referral_event(
                    "referral.reversed",
                    candidate,
                    candidate.occurred_at,
                    reason_code=decision.reason_code,
                    reason=decision.reason,
                )
            )
            return out
        if decision.outcome == "attributed" or state.status not in ("pending", "attributed"):
            _qualify(state, out, rules)
            return out
    elif state.status != "pending":
        return out
    state.status = decision.outcome
    out.events.append(
        referral_event(
            f"referral.{decision.outcome}",
            candidate,
            candidate.occurred_at,
            reason_code=decision.reason_code,
            reason=decision.reason,
        )
    )
    state.excluded_accounts = list(decision.referrer_accounts)
    state.excluded_counterparties = sorted(
        {*state.excluded_counterparties, *decision.referrer_counterparties}
    )
    if decision.outcome == "attributed":
        state.upline = list(decision.upline)
        _qualify(state, out, rules)
    return out


def qualifying_deposits(state: CustomerReferralState, until: datetime | None = None) -> Decimal:
    """Money in during the window (up to `until`), except what came from the referrer, directly
    or through an external account the referrer uses."""
    return sum(
        (
            amount
            for t, amount, account, counterparty in state.money_in
            if (until is None or t <= until)
            and (account is None or account not in state.excluded_accounts)
            and (counterparty is None or counterparty not in state.excluded_counterparties)
        ),
        Decimal(0),
    )


def _qualify(
    state: CustomerReferralState,
    out: RefereeOutcome,
    rules: ReferralRules,
    not_before: datetime | None = None,
) -> None:
    """Qualify at the first moment, in event time, at which the referee had deposited enough
    or transacted enough (not before the referral itself, nor before `not_before`): the same
    moment and amount whether the decision came before the money or after it."""
    if state.status != "attributed" or state.candidate is None or state.rechecking:
        return
    since = max(state.candidate.occurred_at, not_before or state.candidate.occurred_at)
    moments = sorted({t for t, *_ in state.money_in} | set(state.transacted))
    for moment in moments:
        at = max(moment, since)
        deposits = qualifying_deposits(state, at)
        transactions = sum(1 for t in state.transacted if t <= at)
        if deposits < rules.qualify_deposit and transactions < rules.qualify_transactions:
            continue
        state.status = "qualified"
        state.qualified_at = at
        out.events.append(
            referral_event(
                "referral.qualified",
                state.candidate,
                at,
                qualifying_amount=deposits,
                qualifying_transactions=transactions,
            )
        )
        return


def on_review(
    state: CustomerReferralState | None,
    referee: str,
    referral_id: str,
    approve: bool,
    t: datetime,
    rules: ReferralRules,
) -> RefereeOutcome:
    """A held referral reviewed by the bank: released (then it may qualify) or rejected."""
    state = _working(state, lambda: CustomerReferralState(customer_id=referee), False)
    out = RefereeOutcome(state)
    candidate = state.candidate
    if candidate is None or candidate.referral_id != referral_id or state.status != "held":
        return out
    if approve:
        state.status = "attributed"
        out.events.append(referral_event("referral.released", candidate, t))
        _qualify(state, out, rules, not_before=t)
    else:
        state.status = "rejected"
        out.events.append(
            referral_event(
                "referral.rejected",
                candidate,
                t,
                reason_code=ReferralReason.REVIEW_REJECTED,
                reason="rejected on review by the bank",
            )
        )
    return out


# -- 3. referrers ------------------------------------------------------------------------------


def _vouch(state: CustomerReferralState, candidate: Candidate) -> None:
    kept = [c for c in state.vouched if c.referral_id != candidate.referral_id]
    state.vouched = [*kept, candidate.model_copy(update={"recheck": False})][-50:]


def _decided_as(candidate: Candidate) -> str:
    decided_as = candidate.referral_id
    if candidate.recheck:
        decided_as += ":" + ",".join(sorted(candidate.referee_hashes))
    return decided_as


def await_decision(
    state: CustomerReferralState | None, candidate: Candidate
) -> CustomerReferralState | None:
    """A candidate reaching its referrer waits there until every candidate dated before it has
    arrived (the steps watermarks); returns the state with it waiting, or None for one decided
    or waiting already (a redelivery)."""
    state = _working(state, lambda: CustomerReferralState(customer_id=candidate.referrer), False)
    decided_as = _decided_as(candidate)
    if decided_as in state.decided or any(_decided_as(c) == decided_as for c in state.awaiting):
        return None
    state.awaiting = [*state.awaiting, candidate]
    return state


def decide_awaiting(
    state: CustomerReferralState, before: datetime, rules: ReferralRules
) -> tuple[CustomerReferralState, list[Decision]]:
    """Decide, in event-time order, the waiting candidates dated before `before`."""
    ready = sorted(
        (c for c in state.awaiting if c.occurred_at < before),
        key=lambda c: (c.occurred_at, c.referral_id, c.recheck),
    )
    state.awaiting = [c for c in state.awaiting if c.occurred_at >= before]
    decisions = []
    for candidate in ready:
        state, decision = decide(state, candidate, rules)
        if decision is not None:
            decisions.append(decision)
    return state, decisions


def decide(
    state: CustomerReferralState | None, candidate: Candidate, rules: ReferralRules
) -> tuple[CustomerReferralState, Decision | None]:
    """The fraud guards that need the referrer's facts. Returns None for a candidate decided
    before (a redelivery)."""
    state = _working(state, lambda: CustomerReferralState(customer_id=candidate.referrer), False)
    decided_as = _decided_as(candidate)
    if decided_as in state.decided:
        return state, None
    state.decided = [*state.decided, decided_as][-200:]
    t = candidate.occurred_at

    def answer(
        outcome: Literal["attributed", "held", "rejected"],
        code: ReferralReason | None = None,
        reason: str | None = None,
    ) -> Decision:
        return Decision(
            candidate=candidate,
            outcome=outcome,
            reason_code=code,
            reason=reason,
            upline=(candidate.referrer, *state.upline[:1]),
            referrer_accounts=tuple(state.accounts),
            referrer_counterparties=tuple(state.counterparties),
        )

    if candidate.referee == candidate.referrer:
        return state, answer(
            "rejected", ReferralReason.SELF_REFERRAL, "the referee is the referrer"
        )
    shared = set(candidate.referee_hashes) & set(state.hashes)
    if shared:
        return state, answer(
            "rejected",
            ReferralReason.SHARED_PHONE_OR_DEVICE,
            "the referee shares a phone number or device with the referrer",
        )
    if candidate.recheck:
        _vouch(state, candidate)
        return state, answer("attributed")  # confirmed: the referee may qualify now
    # The upline arrives with the referrer's own decision; the referrer's own candidate is
    # known from its opening on. Checking both catches A->B with B->A in either order, even
    # when both referrals are decided at the same moment.
    # Only the referrer's own referral made before this one counts: one made later is checked
    # when it is decided (its referrer's own candidate is this one), so that a replay that
    # reads the referrer's events ahead decides the same.
    own = state.candidate
    if candidate.referee in state.upline or (
        own is not None and own.referrer == candidate.referee and own.occurred_at <= t
    ):
        return state, answer(
            "rejected",
            ReferralReason.REFERRAL_RING,
            f"{candidate.referee} is already in {candidate.referrer}'s referral chain, so "
            "the two would refer each other",
        )
    since = t - timedelta(days=rules.velocity_window_days)
    recent = [r for r in state.referred if r[0] > since]
    state.referred = [*recent, (t, candidate.referee)]
    _vouch(state, candidate)
    if len(recent) >= rules.velocity_limit:
        return state, answer(
            "held",
            ReferralReason.VELOCITY,
            f"{len(recent) + 1} referrals by {candidate.referrer} within "
            f"{rules.velocity_window_days} days, more than {rules.velocity_limit}: held for review",
        )
    return state, answer("attributed")
