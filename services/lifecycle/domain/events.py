"""One account event, or the passing of event time, through every lifecycle rule: the entry
points the service layer calls (`apply_event`, `advance`, `next_deadline`)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

from schemas.account_events import (
    HOUSEHOLD_PURPOSES,
    AccountClosed,
    AccountEvent,
    AccountOpened,
    CardPayment,
    ComplaintFiled,
    CustomerUpdated,
    DirectDebitCancelled,
    DirectDebitCreated,
    EventType,
    Position,
    ProductClosed,
    ProductOpened,
    StandingOrderCancelled,
    StandingOrderCreated,
    TransferIn,
    TransferOut,
    Withdrawal,
    is_customer_initiated,
    is_redelivery,
)
from schemas.lifecycle import SignalKind, Stage
from services.lifecycle.domain.balances import month_of, record_balance
from services.lifecycle.domain.milestones import (
    anniversaries,
    birthdays,
    learn_birthday,
    next_anniversary,
    next_birthday,
    years_completed,
)
from services.lifecycle.domain.rules import LifecycleRules
from services.lifecycle.domain.signals import (
    check_balance_drain,
    check_competitor_transfer,
    check_income,
    check_payments_moved,
    escalate_signal,
    mandate_weight,
    moving_money,
    raise_signal,
    resolve_signal,
    signal_deadlines,
    time_signals,
)
from services.lifecycle.domain.stages import reevaluate
from services.lifecycle.domain.state import (
    NO_PSEUDONYMS,
    Cancellation,
    CustomerState,
    Mandate,
    MandateKind,
    Outcome,
    Outflow,
    Output,
    Payer,
    Pseudonyms,
)

_31_DAYS = timedelta(days=31)
_91_DAYS = timedelta(days=91)

Mandates = StandingOrderCreated | StandingOrderCancelled | DirectDebitCreated | DirectDebitCancelled


# -- time ------------------------------------------------------------------------------------


def _deadlines(state: CustomerState, rules: LifecycleRules) -> list[datetime]:
    """Every future moment at which a time rule could change something for this customer."""
    if state.relationship_start is None or not state.open_accounts:
        return []
    quiet_since = state.last_activity_at or state.relationship_start
    found = [
        quiet_since + rules.spans.dormant_after,
        state.relationship_start + rules.spans.maturity_tenure,
        *signal_deadlines(state, rules),
    ]
    for upcoming in (next_anniversary(state), next_birthday(state)):
        if upcoming is not None:
            found.append(upcoming)
    if not state.activated:
        found.append(state.relationship_start + rules.spans.activation_window)
    if state.last_activity_at is not None:
        found.append(state.last_activity_at + rules.spans.maturity_recent_activity)
    if state.daily_totals:
        # The 30- and 90-day averages keep moving until the last change leaves the window.
        last_change = datetime.fromordinal(max(state.daily_totals)).replace(
            tzinfo=state.relationship_start.tzinfo
        )
        found += [last_change + _31_DAYS, last_change + _91_DAYS]
    return found


def next_deadline(state: CustomerState, rules: LifecycleRules) -> datetime | None:
    """The earliest moment, after what was already evaluated, when time alone matters."""
    after = state.evaluated_until
    future = [d for d in _deadlines(state, rules) if after is None or d > after]
    return min(future) if future else None


def advance(state: CustomerState, now: datetime, rules: LifecycleRules) -> list[Output]:
    """Let time pass up to `now` (event time): fire every due time rule at its own moment."""
    outputs: list[Output] = []
    for _ in range(64):  # a handful of deadlines at most; the bound guards against a rule bug
        due = next_deadline(state, rules)
        if due is None or due > now:
            break
        state.evaluated_until = due
        outputs += anniversaries(state, due) + birthdays(state, due)
        outputs += time_signals(state, due, rules)
        outputs += reevaluate(state, due, None, rules)
    return outputs


# -- events ----------------------------------------------------------------------------------


def _remember(state: CustomerState, event: AccountEvent, position: Position | None) -> bool:
    """Record the event id and its position in the input; False when it was seen before (a
    duplicate: the same id, or a record at or before the last applied)."""
    if event.event_id in state.recent_event_ids or is_redelivery(state.position, position):
        return False
    state.position = position or state.position
    state.recent_event_ids[event.event_id] = int(event.occurred_at.timestamp())
    if len(state.recent_event_ids) > 256:
        # Duplicates arrive close to the original; keep the newest ids only.
        newest = sorted(state.recent_event_ids.items(), key=lambda kv: kv[1])[-128:]
        state.recent_event_ids = dict(newest)
    return True


def _complaint(state: CustomerState, event: ComplaintFiled, rules: LifecycleRules) -> list[Output]:
    t = event.occurred_at
    window = rules.spans.complaint_window
    state.complaints = [c for c in state.complaints if t - c[0] < window] + [(t, event.event_id)]
    event_ids = [c[1] for c in state.complaints]
    outputs: list[Output] = []
    if SignalKind.COMPLAINT not in state.signals:
        evidence = {"event_ids": event_ids, "complaints_30d": len(state.complaints)}
        outputs += raise_signal(state, SignalKind.COMPLAINT, t, rules, evidence)
    if len(state.complaints) >= rules.complaint_escalate_count:
        outputs += escalate_signal(
            state,
            SignalKind.COMPLAINT,
            t,
            rules,
            complaints_30d=len(state.complaints),
            event_ids=event_ids,
        )
    return outputs


def _income(
    state: CustomerState, event: TransferIn, payer_key: str, rules: LifecycleRules
) -> list[Output]:
    t = event.occurred_at
    known = state.payers.get(payer_key)
    previous_at = known.last_at if known is not None else None
    previous_id = known.last_event_id if known is not None else None
    payer = known or Payer(last_at=t, last_event_id=event.event_id)
    payer.months = sorted({*payer.months, month_of(t)})[-6:]
    payer.amounts = [*payer.amounts, event.amount][-6:]
    if t >= payer.last_at:
        payer.last_at, payer.last_event_id = t, event.event_id
    state.payers[payer_key] = payer
    if len(state.payers) > 5:
        oldest = min(state.payers, key=lambda k: state.payers[k].last_at)
        del state.payers[oldest]
    outputs = check_income(state, payer_key, previous_at, previous_id, event.event_id, t, rules)
    salary = state.signals.get(SignalKind.SALARY_STOPPED)
    if salary is not None and salary.evidence.get("payer") == payer_key:
        outputs += resolve_signal(state, SignalKind.SALARY_STOPPED, t, "the payer paid in again")
    return outputs


def _note_rhythm(state: CustomerState, t: datetime, rules: LifecycleRules) -> None:
    """The customer's usual gap between own transactions, as a moving average of the gaps. A
    gap longer than the inactivity rule's is an absence, not the rhythm: it counts as that."""
    if state.last_activity_at is None or t <= state.last_activity_at:
        return
    gap = min((t - state.last_activity_at).total_seconds() / 86400, rules.inactivity_days)
    usual = state.usual_gap_days
    state.usual_gap_days = round(gap if usual is None else 0.8 * usual + 0.2 * gap, 3)


def _note_one_off(state: CustomerState, event: TransferOut, rules: LifecycleRules) -> None:
    """A single large payment to someone else (not a bill, not the customer's own money
    moving): a car, a deposit on a flat, a notary. Kept 90 days for the balance-drain rule."""
    t = event.occurred_at
    if event.mandate_id is not None or event.purpose in HOUSEHOLD_PURPOSES:
        return
    before = state.total_balance  # the balances are not yet moved by this event
    if before <= 0 or event.amount < before * rules.drain_one_off_share:
        return
    state.one_offs = [o for o in state.one_offs if t - o[0] < _91_DAYS] + [(t, event.amount)]


def _mandate(state: CustomerState, event: Mandates, rules: LifecycleRules) -> list[Output]:
    t = event.occurred_at
    kind: MandateKind = (
        "standing_order" if event.event_type.startswith("standing_order") else "direct_debit"
    )
    if isinstance(event, StandingOrderCreated | DirectDebitCreated):
        if event.mandate_id not in state.mandates:
            state.mandates[event.mandate_id] = Mandate(kind=kind, created_at=t)
            state.mandates_created = [*state.mandates_created, t][-20:]
    else:
        # A mandate set up before the service first saw the customer is cancelled unseen.
        mandate = state.mandates.pop(event.mandate_id, None) or Mandate(kind=kind)
        cancellation = Cancellation(
            at=t,
            mandate_id=event.mandate_id,
            weight=mandate_weight(mandate.created_at, t, rules),
            event_id=event.event_id,
        )
        keep = max(rules.spans.payments_moved_window, rules.spans.payments_moved_quiet)
        state.cancellations = [c for c in state.cancellations if t - c.at < keep]
        state.cancellations.append(cancellation)
    return check_payments_moved(state, t, event.event_id, rules)


def apply_event(
    state: CustomerState | None,
    event: AccountEvent,
    now: datetime,
    rules: LifecycleRules,
    keys: Pseudonyms = NO_PSEUDONYMS,
    *,
    owned: bool = False,
    position: Position | None = None,
) -> Outcome:
    """Apply one account event. `now` is the stream's clock (highest event time seen less the
    allowed lateness); time rules due by then fire first, each dated at its own deadline.
    `keys` are the keyed pseudonyms the service made of the event's counterparty account and
    name and of a profile's holder name: the rules never see the data itself. `position`:
    the event's (partition, offset) in the input, when it was read from there.
    The given state is left as it was, unless the caller says it `owned` it (a state freshly
    loaded for this call): then it is changed in place, saving a deep copy per event (a third
    of the rules' time)."""
    if state is None:
        state = CustomerState(customer_id=event.customer_id)
    elif not owned:
        state = copy.deepcopy(state)
    if not _remember(state, event, position):
        return Outcome(state, duplicate=True)
    if state.relationship_start is not None and state.anniversaries_passed is None:
        state.anniversaries_passed = years_completed(
            state.relationship_start, min(now, event.occurred_at)
        )
    outputs: list[Output] = []
    if state.relationship_start is not None and state.open_accounts:
        outputs += advance(state, min(now, event.occurred_at), rules)
    t = event.occurred_at
    state.last_event_at = max(state.last_event_at or t, t)
    kind = EventType(event.event_type)

    if isinstance(event, AccountOpened):
        if not state.open_accounts:
            if state.relationship_start is not None:
                state.win_back = True
            state.relationship_start = t
            state.anniversaries_passed = 0
            state.activated = False
            state.initiated_count = 0
            state.evaluated_until = t
            state.stage = Stage.CHURNED if state.win_back else None
        state.open_accounts = sorted({*state.open_accounts, event.account_id})
    elif isinstance(event, AccountClosed):
        state.open_accounts = [a for a in state.open_accounts if a != event.account_id]
        state.balances.pop(event.account_id, None)
        if not state.open_accounts:
            for signal in list(state.signals):
                outputs += resolve_signal(state, signal, t, "the customer closed the last account")
    elif isinstance(event, ProductOpened):
        state.open_products[event.product.product_id] = event.product.category
        state.pending_closures.pop(event.product.category, None)
        outputs += resolve_signal(state, SignalKind.PRODUCT_CLOSURE, t, "a product was taken up")
    elif isinstance(event, ProductClosed):
        state.open_products.pop(event.product.product_id, None)
        state.pending_closures[event.product.category] = (t, event.event_id)
    elif isinstance(event, CustomerUpdated):
        learn_birthday(state, event)
        state.holder_name_key = keys.holder_name or state.holder_name_key
    elif isinstance(event, ComplaintFiled):
        outputs += _complaint(state, event, rules)
    elif isinstance(event, TransferIn) and keys.counterparty is not None:
        outputs += _income(state, event, keys.counterparty, rules)
    elif isinstance(event, Mandates):
        outputs += _mandate(state, event, rules)

    balance_after = getattr(event, "balance_after", None)
    if balance_after is not None and event.account_id is not None:
        if isinstance(event, Withdrawal | TransferOut | CardPayment):
            why = (
                moving_money(event, rules, state.holder_name_key, keys.counterparty_name)
                if isinstance(event, TransferOut)
                else None
            )
            external = isinstance(event, TransferOut) and not rules.at_home(event.counterparty)
            state.outflows.append(
                Outflow(
                    at=t,
                    amount=event.amount,
                    external=external,
                    event_id=event.event_id,
                    moving=why is not None,
                    why=why,
                )
            )
            state.outflows = [o for o in state.outflows if t - o.at < _31_DAYS]
            if isinstance(event, TransferOut) and why is None:
                _note_one_off(state, event, rules)
        record_balance(state, event.account_id, balance_after, t)

    # Interest, fees and payments on standing instructions move the balance (above) and are
    # never the customer's own activity: a dormant account keeps receiving them.
    if is_customer_initiated(event):
        _note_rhythm(state, t, rules)
        state.last_activity_at = max(state.last_activity_at or t, t)
        state.initiated_count += 1
        outputs += resolve_signal(state, SignalKind.INACTIVITY, t, "customer activity resumed")
    if (
        state.open_accounts
        and not state.activated
        and (
            state.initiated_count >= rules.activation_transactions
            or state.total_balance >= rules.activation_balance
        )
    ):
        state.activated = True
    if balance_after is not None:
        outputs += check_balance_drain(state, t, event.event_id, rules)
        if kind is EventType.TRANSFER_OUT:
            outputs += check_competitor_transfer(state, t, rules)
    if state.relationship_start is not None:
        # evaluated_until stays where the clock left it: deadlines between the stream clock and
        # this event are checked later, against the state as it will be then.
        outputs += reevaluate(state, t, event.event_id, rules)
    return Outcome(state, outputs)
