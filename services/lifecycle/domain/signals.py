"""Churn signals: each rule that raises, escalates or resolves one, from an event or from the
passing of time, with the evidence an RM reads (amounts, dates, event ids; counterparties only
as keyed pseudonyms)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from schemas.account_events import (
    HOUSEHOLD_PURPOSES,
    MONEY_MOVING_PURPOSES,
    TransferOut,
)
from schemas.lifecycle import ChurnCause, ChurnSignalChanged, SignalKind, Stage
from services.lifecycle.domain.balances import max_balance, usual_monthly_low
from services.lifecycle.domain.explain import explain_signal
from services.lifecycle.domain.rules import CAUSE, LifecycleRules
from services.lifecycle.domain.stages import churn_score
from services.lifecycle.domain.state import (
    Cancellation,
    CustomerState,
    OpenSignal,
    Output,
    output_id,
    usual_amount,
)

# One-off payments stay out of the drain for as long as the 30-day maximum remembers them.
_31_DAYS = timedelta(days=31)
# Two payments of one payer closer than this are one pay period's (a salary paid in parts).
_PAY_PERIOD = timedelta(days=20)


def _signal_event(
    state: CustomerState, kind: SignalKind, change: str, t: datetime, signal: OpenSignal
) -> ChurnSignalChanged:
    return ChurnSignalChanged(
        event_id=output_id(state.customer_id, "signal", kind, change, t.isoformat()),
        type=f"churn_signal.{change}",
        occurred_at=t,
        customer_id=state.customer_id,
        signal=kind,
        cause=signal.cause,
        signal_weight=signal.weight,
        churn_score=churn_score(state),
        stage=state.stage or Stage.ACQUISITION,
        tier=state.tier,
        evidence=signal.evidence,
        explanation=None if change == "resolved" else explain_signal(kind, signal.evidence),
    )


def raise_signal(
    state: CustomerState,
    kind: SignalKind,
    t: datetime,
    rules: LifecycleRules,
    evidence: dict[str, Any],
    cause: ChurnCause | None = None,
    reference: Decimal = Decimal(0),
) -> list[Output]:
    """Open the signal (nothing when it is open already)."""
    if kind in state.signals:
        return []
    signal = OpenSignal(
        cause=cause or CAUSE[kind],
        raised_at=t,
        weight=rules.weights[kind],
        evidence=evidence,
        reference=reference,
        last_seen_at=t,
    )
    state.signals[kind] = signal
    return [_signal_event(state, kind, "raised", t, signal)]


def escalate_signal(
    state: CustomerState, kind: SignalKind, t: datetime, rules: LifecycleRules, **evidence: Any
) -> list[Output]:
    """Raise an open signal's weight to the escalated weight, once."""
    signal = state.signals.get(kind)
    if signal is None or signal.escalated:
        return []
    signal.escalated = True
    signal.weight = max(signal.weight, rules.escalated_weight)
    signal.evidence = {**signal.evidence, **evidence}
    return [_signal_event(state, kind, "escalated", t, signal)]


def resolve_signal(state: CustomerState, kind: SignalKind, t: datetime, why: str) -> list[Output]:
    """Close an open signal, saying why."""
    signal = state.signals.pop(kind, None)
    if signal is None:
        return []
    signal.evidence = {**signal.evidence, "resolved_because": why}
    return [_signal_event(state, kind, "resolved", t, signal)]


def money(value: Decimal) -> str:
    """An amount as evidence shows it: two decimal places."""
    return str(value.quantize(Decimal("0.01")))


# -- money leaving ----------------------------------------------------------------------------


def moving_money(
    event: TransferOut,
    rules: LifecycleRules,
    holder_name_key: str | None,
    counterparty_name_key: str | None,
) -> str | None:
    """Why a payment to another institution looks like the customer's own money moving there
    (a competitor's pull), or None for one that does not: a bill, a payment on a standing
    order or direct debit, a payment to the state, or an ordinary payment to someone else."""
    cp = event.counterparty
    if rules.at_home(cp) or event.mandate_id is not None or cp.kind == "government":
        return None
    if event.purpose in HOUSEHOLD_PURPOSES:
        return None
    if event.purpose in MONEY_MOVING_PURPOSES:
        return f"purpose {event.purpose}"
    if cp.own_account:
        return "the customer's own account"
    if holder_name_key is not None and counterparty_name_key == holder_name_key:
        return "an account in the customer's own name"
    if cp.institution in rules.competitor_bank_codes:
        return "a listed competitor"
    return None


def check_balance_drain(
    state: CustomerState, t: datetime, event_id: str, rules: LifecycleRules
) -> list[Output]:
    """Raise, escalate or resolve `balance_drain` after a balance moved."""
    # A large one-off payment to someone else (a car, a flat) is life, not a drain: the balance
    # it took is counted as still there.
    one_offs = sum((amount for at, amount in state.one_offs if t - at < _31_DAYS), Decimal(0))
    total = state.total_balance + one_offs
    open_signal = state.signals.get(SignalKind.BALANCE_DRAIN)
    if open_signal is not None:
        if total >= open_signal.reference * rules.drain_recovered_ratio:
            return resolve_signal(state, SignalKind.BALANCE_DRAIN, t, "balance recovered")
        if total <= open_signal.reference * rules.drain_escalate_ratio:
            return escalate_signal(
                state, SignalKind.BALANCE_DRAIN, t, rules, escalated_balance=money(total)
            )
        return []
    reference, reference_day = max_balance(state, t, 30)
    if reference < rules.drain_min_reference:
        return []
    # Every month a salaried household's balance falls from its payday peak to a low: only
    # falling well below the customer's usual low is a drain.
    # Until two months of the customer's own history are known, nothing is: no drain.
    usual_low = usual_monthly_low(state, t)
    if usual_low is None or total >= usual_low:
        return []
    income = income_state(state, t, rules)
    # Weak signs that combine: a household whose regular income fell and stayed down, and whose
    # balance is below its usual low, is living off its savings before half of them are gone.
    halved = (
        total <= reference * rules.drain_ratio and total < usual_low * rules.drain_usual_low_ratio
    )
    if not halved and income != "lasting_fall":
        return []
    since = datetime.fromordinal(reference_day).replace(tzinfo=t.tzinfo)
    flows = [o for o in state.outflows if o.at >= since]
    outflow = sum((o.amount for o in flows), Decimal(0))
    external = sum((o.amount for o in flows if o.external), Decimal(0))
    moved = sum((o.amount for o in flows if o.moving), Decimal(0))
    if outflow and moved * 2 > outflow:
        cause = ChurnCause.COMPETITOR_ATTRACTION
    elif SignalKind.COMPLAINT in state.signals:
        # Savings leaving right after a complaint are the complaint's consequence, not hardship.
        cause = ChurnCause.SERVICE_DISSATISFACTION
    else:
        cause = ChurnCause.FINANCIAL_DISTRESS
        if income in ("kept", "fallen"):
            return []
    evidence = {
        "max_balance_30d": money(reference),
        "max_balance_date": since.date().isoformat(),
        "balance": money(total),
        "outflow": money(outflow),
        "outflow_to_other_banks": money(external),
        "moved_to_other_banks": money(moved),
        "usual_monthly_low": money(usual_low),
        "income": income,
        "one_off_payments": money(one_offs),
        "event_ids": [o.event_id for o in flows][-10:] or [event_id],
    }
    return raise_signal(state, SignalKind.BALANCE_DRAIN, t, rules, evidence, cause, reference)


def income_state(
    state: CustomerState, t: datetime, rules: LifecycleRules
) -> Literal["kept", "fallen", "lasting_fall", "unknown"]:
    """Whether the household's regular income (a salary, a pension: a payer that paid in two
    months running or more) still comes in full: `kept` when one paid within the salary
    rule's days at least `drain_income_kept_ratio` of its usual amount (the median of its
    earlier ones); else `lasting_fall` when one paid less twice running or stopped (within
    twice those days), `fallen` when one paid less once (a month of sick leave, say);
    `unknown` without such a payer. Two months are enough to judge: after the initial load or
    a new job, that is all the history holds."""
    found: Literal["fallen", "lasting_fall", "unknown"] = "unknown"
    for payer in state.payers.values():
        amounts = payer.amounts
        if len(amounts) < 2 or not payer.regular(
            max(2, min(rules.salary_months, len(payer.months)))
        ):
            continue
        since = t - payer.last_at
        if since > 2 * rules.spans.salary_missing:
            continue  # a job or a payer long gone says nothing of the income now
        ratio = rules.drain_income_kept_ratio
        # Against the lower median: with few payments known, a January bonus among them would
        # make the ordinary salaries after it look short.
        if (
            since <= rules.spans.salary_missing
            and amounts[-1] >= usual_amount(amounts[:-1], upper=False) * ratio
        ):
            return "kept"
        lasting = since > rules.spans.salary_missing or (
            len(amounts) >= 3 and amounts[-2] < usual_amount(amounts[:-2], upper=False) * ratio
        )
        if lasting:
            found = "lasting_fall"
        elif found == "unknown":
            found = "fallen"
    return found


def check_income(
    state: CustomerState,
    payer_key: str,
    previous_at: datetime | None,
    previous_event_id: str | None,
    event_id: str,
    t: datetime,
    rules: LifecycleRules,
) -> list[Output]:
    """After a payment of `payer_key` (already in its amounts): raise `income_fell` when a
    regular payer (a salary: monthly, its earlier payments within a fifth of their median) paid
    below `income_fell_ratio` of its usual amount twice running, a pay period apart; resolve it
    when that payer pays the usual amount again (`drain_income_kept_ratio` of it). A relative's
    occasional gifts of varying size are no salary."""
    payer = state.payers[payer_key]
    amounts = payer.amounts
    open_signal = state.signals.get(SignalKind.INCOME_FELL)
    if open_signal is not None:
        if open_signal.evidence.get("payer") != payer_key:
            return []
        usual = Decimal(open_signal.evidence["usual_amount"])
        if amounts[-1] >= usual * rules.drain_income_kept_ratio:
            return resolve_signal(
                state, SignalKind.INCOME_FELL, t, "the payer paid the usual amount again"
            )
        return []
    earlier = amounts[:-2]
    if (
        len(earlier) < 2
        or previous_at is None
        or not _PAY_PERIOD <= t - previous_at <= rules.spans.salary_missing
        # The rhythm here; the amounts as `regular` judges them, but only those before the two
        # short ones: judged with them, a pay cut in a short history (two full salaries, two
        # cut ones) made the salary look irregular, and the fall was seen a month late.
        or not payer.monthly(rules.salary_months)
    ):
        return []
    usual = usual_amount(earlier, upper=False)
    steady = sum(1 for a in earlier if abs(a - usual) * 5 <= usual) >= min(
        rules.salary_months, len(earlier)
    )
    short = usual * rules.income_fell_ratio
    if not steady or usual <= 0 or amounts[-2] >= short or amounts[-1] >= short:
        return []
    evidence = {
        "payer": payer_key,
        "usual_amount": money(usual),
        "last_amounts": [money(amounts[-2]), money(amounts[-1])],
        "share": f"{max(amounts[-2], amounts[-1]) / usual:.2f}",
        "threshold": str(rules.income_fell_ratio),
        "event_ids": [e for e in (previous_event_id, event_id) if e],
    }
    return raise_signal(state, SignalKind.INCOME_FELL, t, rules, evidence)


def check_competitor_transfer(
    state: CustomerState, t: datetime, rules: LifecycleRules
) -> list[Output]:
    """Raise `competitor_transfer` when the customer's own money moved to other institutions
    within the window reaches the share of the balance before it."""
    window = [o for o in state.outflows if o.moving and t - o.at < rules.spans.competitor_window]
    moved = sum((o.amount for o in window), Decimal(0))
    before = state.total_balance + moved
    if not window or before <= 0 or moved < before * rules.competitor_share:
        return []
    signal = state.signals.get(SignalKind.COMPETITOR_TRANSFER)
    if signal is not None:
        signal.last_seen_at = t
        return []
    evidence = {
        "moved_to_other_banks_7d": money(moved),
        "balance_before": money(before),
        "share": f"{moved / before:.2f}",
        "why": sorted({o.why for o in window if o.why}),
        "event_ids": [o.event_id for o in window][-10:],
    }
    return raise_signal(state, SignalKind.COMPETITOR_TRANSFER, t, rules, evidence)


# -- standing orders and direct debits --------------------------------------------------------


def mandate_weight(created_at: datetime | None, t: datetime, rules: LifecycleRules) -> float:
    """How established a mandate was at t: its age over the established period, between 0.1
    and 1; one set up before the service saw the customer counts as established."""
    if created_at is None:
        return 1.0
    return min(1.0, max(0.1, (t - created_at) / rules.spans.mandate_established))


def _unreplaced(state: CustomerState, t: datetime, rules: LifecycleRules) -> list[Cancellation]:
    """The window's cancellations not made good by a new mandate set up after them (within
    the replacement period): a customer who changes their electricity supplier cancels one
    direct debit and gives another, and is not moving banks."""
    window = [c for c in state.cancellations if t - c.at < rules.spans.payments_moved_window]
    left = list(window)
    for created in sorted(state.mandates_created):
        match = next(
            (c for c in left if c.at <= created < c.at + rules.spans.mandate_replacement), None
        )
        if match is not None:
            left.remove(match)
    return left


def check_payments_moved(
    state: CustomerState, t: datetime, event_id: str, rules: LifecycleRules
) -> list[Output]:
    """Raise `payments_moved` when the customer cancelled, within the window, at least the
    share of their standing orders and direct debits (by how established they were) and did
    not set up others in their place; resolve it when new ones make the share fall back."""
    left = _unreplaced(state, t, rules)
    window = [c for c in state.cancellations if t - c.at < rules.spans.payments_moved_window]
    live = sum(mandate_weight(m.created_at, t, rules) for m in state.mandates.values())
    held = live + sum(c.weight for c in window)
    cancelled = sum(c.weight for c in left)
    share = Decimal(cancelled / held) if held else Decimal(0)
    moved = len(left) >= rules.payments_moved_min_cancelled and share >= rules.payments_moved_share
    if SignalKind.PAYMENTS_MOVED in state.signals:
        if not moved and len(left) < len(window):
            return resolve_signal(
                state,
                SignalKind.PAYMENTS_MOVED,
                t,
                "new standing orders or direct debits replaced the cancelled ones",
            )
        return []
    if not moved:
        return []
    evidence = {
        "cancelled": len(left),
        "mandates_before": len(state.mandates) + len(window),
        "share": f"{share:.2f}",
        "window_days": rules.payments_moved_window_days,
        "mandate_ids": [c.mandate_id for c in left][-10:],
        "event_ids": [c.event_id for c in left][-10:] or [event_id],
    }
    return raise_signal(state, SignalKind.PAYMENTS_MOVED, t, rules, evidence)


# -- time ---------------------------------------------------------------------------------------


def inactivity_after(state: CustomerState, rules: LifecycleRules) -> timedelta | None:
    """How long this customer's silence must last to be inactivity: the rule's days, or more
    for a customer whose own rhythm is slower; None for one who never had a rhythm (an account
    opened and never used is an activation problem, left to the dormant rule)."""
    if state.initiated_count < rules.inactivity_min_transactions:
        return None
    usual = timedelta(days=(state.usual_gap_days or 0) * rules.inactivity_gap_multiple)
    return max(rules.spans.inactivity, usual)


def signal_deadlines(state: CustomerState, rules: LifecycleRules) -> list[datetime]:
    """Every future moment at which a signal could be raised or resolved by time alone."""
    assert state.relationship_start is not None
    quiet_since = state.last_activity_at or state.relationship_start
    found = []
    silence = inactivity_after(state, rules)
    if silence is not None:
        found.append(quiet_since + silence)
    for payer in state.payers.values():
        if payer.regular(rules.salary_months):
            found.append(payer.last_at + rules.spans.salary_missing)
    for closed_at, _ in state.pending_closures.values():
        found.append(closed_at + rules.spans.product_replacement)
    if state.complaints:
        found.append(state.complaints[-1][0] + rules.spans.complaint_window)
    competitor = state.signals.get(SignalKind.COMPETITOR_TRANSFER)
    if competitor is not None and competitor.last_seen_at is not None:
        found.append(competitor.last_seen_at + rules.spans.competitor_quiet)
    if SignalKind.PAYMENTS_MOVED in state.signals and state.cancellations:
        found.append(state.cancellations[-1].at + rules.spans.payments_moved_quiet)
    return found


def time_signals(state: CustomerState, t: datetime, rules: LifecycleRules) -> list[Output]:
    """The signals time alone raises or resolves at t."""
    outputs: list[Output] = []
    quiet_since = state.last_activity_at or state.relationship_start
    assert quiet_since is not None
    silence = inactivity_after(state, rules)
    if silence is not None and t - quiet_since >= silence:
        outputs += raise_signal(
            state,
            SignalKind.INACTIVITY,
            t,
            rules,
            {
                "last_activity_at": quiet_since.isoformat(),
                "days_quiet": (t - quiet_since).days,
                "usual_gap_days": state.usual_gap_days,
                "threshold_days": silence.days,
            },
        )
    for key, payer in state.payers.items():
        if payer.regular(rules.salary_months) and t - payer.last_at >= rules.spans.salary_missing:
            outputs += raise_signal(
                state,
                SignalKind.SALARY_STOPPED,
                t,
                rules,
                {
                    "payer": key,
                    "last_paid_at": payer.last_at.isoformat(),
                    "last_event_id": payer.last_event_id,
                    "months_seen": len(payer.months),
                },
            )
    for category, (closed_at, event_id) in list(state.pending_closures.items()):
        if t - closed_at >= rules.spans.product_replacement:
            del state.pending_closures[category]
            outputs += raise_signal(
                state,
                SignalKind.PRODUCT_CLOSURE,
                t,
                rules,
                {"category": category, "closed_at": closed_at.isoformat(), "event_ids": [event_id]},
            )
    window = rules.spans.complaint_window
    state.complaints = [c for c in state.complaints if t - c[0] < window]
    if SignalKind.COMPLAINT in state.signals and not state.complaints:
        outputs += resolve_signal(state, SignalKind.COMPLAINT, t, "no new complaint for 30 days")
    competitor = state.signals.get(SignalKind.COMPETITOR_TRANSFER)
    if (
        competitor is not None
        and competitor.last_seen_at is not None
        and t - competitor.last_seen_at >= rules.spans.competitor_quiet
    ):
        outputs += resolve_signal(
            state, SignalKind.COMPETITOR_TRANSFER, t, "no transfers to other banks for 30 days"
        )
    if (
        SignalKind.PAYMENTS_MOVED in state.signals
        and state.cancellations
        and t - state.cancellations[-1].at >= rules.spans.payments_moved_quiet
    ):
        outputs += resolve_signal(
            state,
            SignalKind.PAYMENTS_MOVED,
            t,
            f"no standing order or direct debit cancelled for {rules.payments_moved_quiet_days}"
            " days",
        )
    keep = max(rules.spans.payments_moved_window, rules.spans.payments_moved_quiet)
    state.cancellations = [c for c in state.cancellations if t - c.at < keep]
    state.mandates_created = [
        c for c in state.mandates_created if t - c < keep + rules.spans.mandate_replacement
    ]
    return outputs
