"""Step 2, per referee (keyed by customer): the new customer's opening, the candidate referrer
(by code, else by chain), the referrer side's decision, qualification and early exit."""

# ruff: noqa: RUF001  (full-width punctuation is right in Chinese text)

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from schemas.account_events import CounterpartyKind, Position, is_redelivery
from schemas.referral import (
    LeadType,
    ReferralChanged,
    ReferralReason,
)
from services.referral.domain.leads import INSTITUTION_PURPOSES, ChainMatch, Link
from services.referral.domain.rules import ReferralRules, content_id, referral_id, working_state

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
    # Sent again, dated at the moment the referee would qualify, for the referrer's payments
    # up to then (one-hop funding): a payment to the go-between usually comes after the
    # referral, so the decision's own could not carry it.
    funding_check: bool = False


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
    # The referrals along the upline (referral id, referee), nearest first: a ring closed
    # later holds every leg of it.
    upline_legs: tuple[tuple[str, str], ...] = ()
    # The referrer's payments to external accounts (key, when, amount) up to the candidate's
    # time: money that reaches the referee from one of them soon after, about as much, came
    # from the referrer.
    referrer_payments: tuple[tuple[str, datetime, Decimal], ...] = ()
    # A decision on a referral already decided: a burst or a ring seen later holds it (or
    # reverses it, when it had qualified).
    after_the_fact: bool = False


# The reasons in Chinese, for the RM reading a held or rejected referral (the English sentence,
# with its figures, is `reason`).
REASONS_ZH: dict[ReferralReason, str] = {
    ReferralReason.SELF_REFERRAL: "推荐人与被推荐人是同一客户",
    ReferralReason.SHARED_PHONE_OR_DEVICE: "被推荐人与推荐人使用同一手机号码或设备",
    ReferralReason.REFERRAL_RING: "推荐关系形成闭环（客户之间相互推荐）",
    ReferralReason.VELOCITY: "推荐人短期内推荐人数超过上限，整批推荐暂停待审核",
    ReferralReason.CODE_UNKNOWN: "开户时使用的推荐码从未发放",
    ReferralReason.CODE_EXPIRED: "推荐码已过有效期",
    ReferralReason.EARLY_EXIT: "被推荐人达标后90天内销户",
    ReferralReason.REVIEW_REJECTED: "经银行审核后拒绝",
    ReferralReason.FUNDED_BY_REFERRER: (
        "被推荐人账户资金来自推荐人（直接或经一个账户转入），暂停待审核"
    ),
}


def referral_event(
    kind: str,
    candidate: Candidate,
    t: datetime,
    **fields: Any,
) -> ReferralChanged:
    code, reason = fields.get("reason_code"), fields.get("reason")
    if code is not None and reason is not None:
        fields["explanation"] = {"en": reason, "zh-CN": REASONS_ZH[code] + "。"}
    return ReferralChanged(
        event_id=content_id(kind, candidate.referral_id),
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
    # The keyed name the customer holds accounts in (customer.updated): a payee of that name at
    # another bank is the customer's own account there, whatever the feed's flag says.
    holder_name_key: str | None = None
    accounts: list[str] = []  # every account ever opened here
    counterparties: list[str] = []  # recent external accounts, keyed hashes
    upline: list[str] = []  # who referred this customer, and who referred them
    upline_legs: list[tuple[str, str]] = []  # those referrals: (referral id, referee)
    # As a referrer: payments to external accounts that could fund someone (key, when,
    # amount), kept PAYMENTS_KEPT_DAYS: a funding check reads them as of a referee's
    # qualifying moment, however far this customer's input has run ahead.
    payments_out: list[tuple[str, datetime, Decimal]] = []
    # As a referrer: referrals held after the fact (a burst, a ring), each once.
    held_after: list[str] = []
    # As a referee: the referrer's payments its decision carried.
    referrer_payments: list[tuple[str, datetime, Decimal]] = []
    referred: list[tuple[datetime, str]] = []  # (attributed at, referee), as a referrer
    decided: list[str] = []  # referral ids decided as a referrer: redeliveries change nothing
    # Referrals this customer let through as a referrer, with the referee's hashes as last
    # known: checked again when this customer's own phone or device hashes arrive later.
    vouched: list[Candidate] = []
    channel: str | None = None
    candidate: Candidate | None = None
    # A recheck of new phone or device hashes is on its way: no qualifying until it is back.
    rechecking: bool = False
    # As a referee: the moment a funding check is on its way for (no qualifying until it is
    # back), and the moment the last one answered for.
    funding_check_at: datetime | None = None
    funding_checked_at: datetime | None = None
    # As a referee: released on review; what came before was reviewed.
    released_at: datetime | None = None
    status: Literal["pending", "attributed", "held", "rejected", "qualified", "reversed"] | None = (
        None
    )
    qualified_at: datetime | None = None
    # As a referee: held after the fact (a burst or a ring its referrer was part of), with
    # when and why: (decided at, reason code, reason).
    held_after_the_fact: tuple[datetime, ReferralReason, str] | None = None
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
    # Where the last account event applied sits in the input (partition, offset): a customer's
    # events share a partition, so one at or before it is a redelivery, however many events
    # came since (`seen` holds the last 50 ids: a rebalance had redelivered a partition's first
    # 3,300 records, a hundred events per customer, and deposits counted twice).
    position: Position | None = None


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
    # Keyed names (services/runtime/pseudonym.name_key): the counterparty's, and the customer's
    # own from a profile change.
    counterparty_name_key: str | None = None
    holder_name_key: str | None = None
    purpose: str | None = None
    income: bool = False  # salary, pension or benefit: the payer's money, not the customer's
    # Chosen by the customer now: not interest, fees or payments on a standing instruction.
    initiated: bool = False
    hashes: tuple[str, ...] = ()
    # (partition, offset) in the input topic; None where the caller has no position (a replay
    # of history read from elsewhere).
    position: Position | None = None


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
    state = working_state(state, lambda: CustomerReferralState(customer_id=customer_id), owned)
    out = RefereeOutcome(state)
    if event.event_id in state.seen or is_redelivery(state.position, event.position):
        return out
    state.seen = [*state.seen, event.event_id][-50:]
    state.position = event.position or state.position
    t = event.occurred_at
    kind = event.event_type
    if (
        event.counterparty_name_key is not None
        and event.counterparty_name_key == state.holder_name_key
    ):
        # Most feeds do not flag the customer's own account elsewhere; the name on it says so.
        event = replace(event, counterparty_own_account=True)

    if kind == "customer.updated":
        state.holder_name_key = event.holder_name_key or state.holder_name_key
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
        if (
            kind == "transfer.out"
            and could_fund_someone(event)
            and not _repeats(state.payments_out, event)
        ):
            kept = timedelta(days=PAYMENTS_KEPT_DAYS)
            recent = [p for p in state.payments_out if t - p[1] <= kept]
            state.payments_out = [*recent, (event.counterparty_key, t, event.amount)][
                -PAYMENTS_KEPT:
            ]
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
    _settle(state, out, rules)
    return out


# Long enough for a funding check made while the referrer's input ran far ahead of the steps
# (a replay of a year's backlog: the steps lag the input by up to the whole of it) to read the
# payments of the referee's qualifying window. Only payments to people are kept, so a
# household's rent, family and friends stay well under the count.
PAYMENTS_KEPT_DAYS = 400
PAYMENTS_KEPT = 200


def could_fund_someone(event: Movement) -> bool:
    """A payment that could reach a referee through a go-between: not a bill, a tax or a loan
    instalment, not to a business or the state, not to the customer's own account, and chosen
    now. A payment the bank makes on a standing order or direct debit was set up before the
    referral: a landlord who opens an account and moves in about a month's rent a few days
    after it arrived is the chain working, not the referrer funding a referee."""
    return (
        event.initiated
        and event.purpose not in INSTITUTION_PURPOSES
        and event.counterparty_kind not in ("business", "government")
        and not event.counterparty_own_account
    )


# A payment about as much as one made to the same payee at least this long before is the same
# obligation again (rent or an allowance paid by hand each month), not money sent for a referral.
REPEAT_AFTER = timedelta(days=20)


def _repeats(kept: list[tuple[str, datetime, Decimal]], event: Movement) -> bool:
    return any(
        paid_to == event.counterparty_key
        and event.occurred_at - at >= REPEAT_AFTER
        and abs(event.amount - paid) * 10 <= paid
        for paid_to, at, paid in kept
    )


def _funded_at(
    state: CustomerReferralState, rules: ReferralRules, known: datetime, since: datetime
) -> tuple[datetime, bool] | None:
    """When the referrer's money first reached the referee (after `since`), and whether it came
    through a go-between: from one of the
    referrer's accounts here, or from an external account the referrer had paid about as much
    within `funding_hop_days` before (one hop), judged only for money up to `known`, the moment
    the referrer's payments are known to. The prospect's own money from the lead's account in a
    chain conversion is not that: its amount has nothing to do with the referrer's rent."""
    hop = timedelta(days=rules.funding_hop_days)
    found = []
    for t, amount, account, key in state.money_in:
        if t < since:
            continue
        if account is not None and account in state.excluded_accounts:
            found.append((t, False))
        elif (
            key is not None
            and t <= known
            and any(
                paid_to == key and timedelta(0) <= t - at <= hop and abs(amount - paid) * 10 <= paid
                for paid_to, at, paid in state.referrer_payments
            )
        ):
            found.append((t, True))
    return min(found, default=None)


def _settle(state: CustomerReferralState, out: RefereeOutcome, rules: ReferralRules) -> None:
    """Qualification and the referrer's funding, in event time, whatever reached the referee
    first (the decision, its money, a funding check's answer): the referral is held if the
    referrer's money reached the referee before (or when) it first did enough, and qualifies at
    that moment otherwise. Money from elsewhere is judged once the referrer's payments up to it
    are known: until then a funding check, dated at the moment that would qualify (or at the
    last such money), travels to the referrer, and nothing qualifies."""
    candidate = state.candidate
    held = state.status == "held" and state.held_after_the_fact is not None
    if (
        candidate is None
        or not (state.status == "attributed" or held)
        or state.rechecking
        or state.funding_check_at is not None
    ):
        return
    since = max(candidate.occurred_at, state.released_at or candidate.occurred_at)
    known = max(since, state.funding_checked_at or since)
    moment = _qualifying_moment(state, rules, since)
    # Held after the fact (a burst, a ring): qualified and reversed at once, funded or not.
    funded = None if held else _funded_at(state, rules, known, since)
    if funded is not None and (moment is None or funded[0] <= moment):
        at, via = funded
        state.status = "held"
        out.events.append(
            referral_event(
                "referral.held",
                candidate,
                max(at, candidate.occurred_at),
                reason_code=ReferralReason.FUNDED_BY_REFERRER,
                reason="the referee's account was funded by the referrer"
                + (" through an account the referrer had just paid" if via else "")
                + ": held for review",
            )
        )
        return
    unjudged = [
        t
        for t, _, _, key in state.money_in
        if key is not None and known < t and (moment is None or t <= moment)
    ]
    if moment is not None and (held or not unjudged):
        _qualify(state, out, moment, held)
    elif unjudged and not held:
        at = moment or max(unjudged)
        state.funding_check_at = at
        out.candidates.append(
            candidate.model_copy(
                update={"funding_check": True, "recheck": False, "occurred_at": at}
            )
        )


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
    state = working_state(state, lambda: CustomerReferralState(customer_id=match.referee), False)
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
    state = working_state(
        state, lambda: CustomerReferralState(customer_id=candidate.referee), False
    )
    out = RefereeOutcome(state)
    if state.candidate is None or state.candidate.referral_id != candidate.referral_id:
        return out
    if decision.after_the_fact:
        _hold_after_the_fact(state, out, decision)
        return out
    if candidate.funding_check:
        if state.funding_check_at != candidate.occurred_at:
            return out  # a redelivery, or an answer overtaken by an earlier moment's check
        state.funding_check_at = None
        state.funding_checked_at = candidate.occurred_at
        state.referrer_payments = sorted(
            {*state.referrer_payments, *decision.referrer_payments}, key=lambda p: (p[1], p[0])
        )
        _settle(state, out, rules)
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
            _settle(state, out, rules)
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
        state.upline_legs = [(candidate.referral_id, candidate.referee), *decision.upline_legs]
        state.referrer_payments = list(decision.referrer_payments)
        _settle(state, out, rules)
    return out


def _hold_after_the_fact(
    state: CustomerReferralState, out: RefereeOutcome, decision: Decision
) -> None:
    """A burst or a ring seen after this referral was let through: the referral is held from
    the decision on. Whether the referee's qualifying money was taken before the decision
    arrived or after it depends on timing (a restart, a rebalance), so the outcome may not:
    the referral is held either way, and a referee who qualifies, before the decision or
    after it, is qualified and reversed at once (its rewards clawed back)."""
    assert state.candidate is not None
    if state.status not in ("attributed", "qualified") or decision.reason_code is None:
        return
    t = decision.candidate.occurred_at
    state.held_after_the_fact = (t, decision.reason_code, decision.reason or "")
    out.events.append(
        referral_event(
            "referral.held",
            state.candidate,
            t,
            reason_code=decision.reason_code,
            reason=decision.reason,
        )
    )
    if state.status == "qualified":
        _reverse_held(state, out)
    else:
        state.status = "held"


def _reverse_held(state: CustomerReferralState, out: RefereeOutcome) -> None:
    """A referral held after the fact whose referee qualified: reversed, dated at the later
    of the two."""
    assert state.candidate is not None and state.held_after_the_fact is not None
    assert state.qualified_at is not None
    held_at, code, reason = state.held_after_the_fact
    state.status = "reversed"
    out.events.append(
        referral_event(
            "referral.reversed",
            state.candidate,
            max(held_at, state.qualified_at),
            reason_code=code,
            reason=reason,
        )
    )


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


def _qualifying_moment(
    state: CustomerReferralState, rules: ReferralRules, since: datetime
) -> datetime | None:
    """The first moment, in event time and not before `since`, at which the referee had
    deposited enough or transacted enough: the same whether the decision came before the
    money or after it."""
    for moment in sorted({t for t, *_ in state.money_in} | set(state.transacted)):
        at = max(moment, since)
        if (
            qualifying_deposits(state, at) >= rules.qualify_deposit
            or sum(1 for t in state.transacted if t <= at) >= rules.qualify_transactions
        ):
            return at
    return None


def _qualify(state: CustomerReferralState, out: RefereeOutcome, at: datetime, held: bool) -> None:
    assert state.candidate is not None
    state.status = "qualified"
    state.qualified_at = at
    out.events.append(
        referral_event(
            "referral.qualified",
            state.candidate,
            at,
            qualifying_amount=qualifying_deposits(state, at),
            qualifying_transactions=sum(1 for t in state.transacted if t <= at),
        )
    )
    if held:
        _reverse_held(state, out)


def on_review(
    state: CustomerReferralState | None,
    referee: str,
    referral_id: str,
    approve: bool,
    t: datetime,
    rules: ReferralRules,
) -> RefereeOutcome:
    """A held referral reviewed by the bank: released (then it may qualify) or rejected."""
    state = working_state(state, lambda: CustomerReferralState(customer_id=referee), False)
    out = RefereeOutcome(state)
    candidate = state.candidate
    if candidate is None or candidate.referral_id != referral_id or state.status != "held":
        return out
    if approve:
        state.status = "attributed"
        state.held_after_the_fact = None
        state.released_at = t
        out.events.append(referral_event("referral.released", candidate, t))
        _settle(state, out, rules)
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
