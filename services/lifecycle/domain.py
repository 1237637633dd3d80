"""Lifecycle rules: a customer's state and one event (or the passing of time) in, the new state
and the stage, tier and churn-signal events out. No faust, no I/O, no wall clock: `now` is always
event time, so replaying history gives the same answers as living through it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, field_validator

from schemas.account_events import (
    CUSTOMER_INITIATED,
    AccountClosed,
    AccountEvent,
    AccountOpened,
    CardPayment,
    ComplaintFiled,
    CustomerUpdated,
    EventType,
    ProductClosed,
    ProductOpened,
    TransferIn,
    TransferOut,
    Withdrawal,
)
from schemas.lifecycle import (
    ChurnCause,
    ChurnSignalChanged,
    CustomerBirthday,
    SignalKind,
    Stage,
    StageChanged,
    Strategy,
    TenureAnniversary,
    Tier,
)

DEFAULT_TIME_ZONE = "Asia/Shanghai"
_ID_NAMESPACE = uuid.UUID("6f1c1d2e-6a55-4a38-9a57-1f0c2b6f7d11")
_CAUSE = {
    SignalKind.INACTIVITY: ChurnCause.DISENGAGEMENT,
    SignalKind.SALARY_STOPPED: ChurnCause.COMPETITOR_ATTRACTION,
    SignalKind.COMPETITOR_TRANSFER: ChurnCause.COMPETITOR_ATTRACTION,
    SignalKind.PRODUCT_CLOSURE: ChurnCause.DISENGAGEMENT,
    SignalKind.COMPLAINT: ChurnCause.SERVICE_DISSATISFACTION,
}


_DEFAULT_WEIGHTS = {
    SignalKind.INACTIVITY: 0.6,
    SignalKind.BALANCE_DRAIN: 0.6,
    SignalKind.SALARY_STOPPED: 0.6,
    SignalKind.COMPETITOR_TRANSFER: 0.7,
    SignalKind.PRODUCT_CLOSURE: 0.3,
    SignalKind.COMPLAINT: 0.4,
}


_31_DAYS = timedelta(days=31)
_91_DAYS = timedelta(days=91)


@dataclass(frozen=True)
class RuleSpans:
    """The rules' periods as timedeltas, made once: the deadlines are checked at every event."""

    activation_window: timedelta
    competitor_quiet: timedelta
    competitor_window: timedelta
    complaint_window: timedelta
    dormant_after: timedelta
    inactivity: timedelta
    maturity_recent_activity: timedelta
    maturity_tenure: timedelta
    product_replacement: timedelta
    salary_missing: timedelta


class LifecycleRules(BaseModel):
    """Every threshold of the lifecycle rules, with the product's defaults (docs/lifecycle.md).
    The service's settings extend this model, so each default is written here once."""

    model_config = ConfigDict(frozen=True)

    activation_window_days: int = 90
    activation_transactions: int = 3
    activation_balance: Decimal = Decimal(1000)
    maturity_tenure_days: int = 365
    maturity_products: int = 2
    maturity_avg_balance_90d: Decimal = Decimal(50000)
    maturity_recent_activity_days: int = 30
    dormant_after_days: int = 180
    at_risk_score: float = 0.6
    affluent_from: Decimal = Decimal(50000)
    hnw_from: Decimal = Decimal(1000000)
    tier_hysteresis: Decimal = Decimal("0.10")
    inactivity_days: int = 45
    drain_ratio: Decimal = Decimal("0.5")
    drain_escalate_ratio: Decimal = Decimal("0.2")
    drain_recovered_ratio: Decimal = Decimal("0.8")
    drain_min_reference: Decimal = Decimal(1000)
    salary_missing_days: int = 45
    competitor_window_days: int = 7
    competitor_share: Decimal = Decimal("0.3")
    competitor_quiet_days: int = 30
    product_replacement_days: int = 30
    complaint_window_days: int = 30
    complaint_escalate_count: int = 2
    own_bank_code: str = "RAPPORTBANK"
    weights: dict[SignalKind, float] = _DEFAULT_WEIGHTS
    escalated_weight: float = 0.8

    @field_validator("weights")
    @classmethod
    def _complete_weights(cls, weights: dict[SignalKind, float]) -> dict[SignalKind, float]:
        # Overriding one weight keeps the defaults of the others.
        merged = {**_DEFAULT_WEIGHTS, **weights}
        if not all(0.0 <= w < 1.0 for w in merged.values()):
            raise ValueError("signal weights must be at least 0 and below 1")
        return merged

    @cached_property
    def spans(self) -> RuleSpans:
        return RuleSpans(
            activation_window=timedelta(days=self.activation_window_days),
            competitor_quiet=timedelta(days=self.competitor_quiet_days),
            competitor_window=timedelta(days=self.competitor_window_days),
            complaint_window=timedelta(days=self.complaint_window_days),
            dormant_after=timedelta(days=self.dormant_after_days),
            inactivity=timedelta(days=self.inactivity_days),
            maturity_recent_activity=timedelta(days=self.maturity_recent_activity_days),
            maturity_tenure=timedelta(days=self.maturity_tenure_days),
            product_replacement=timedelta(days=self.product_replacement_days),
            salary_missing=timedelta(days=self.salary_missing_days),
        )


class OpenSignal(BaseModel):
    """A churn signal that has been raised and not yet resolved."""

    cause: ChurnCause
    raised_at: datetime
    escalated: bool = False
    weight: float
    evidence: dict[str, Any]
    reference: Decimal = Decimal(0)  # balance_drain: the 30-day maximum it fell from
    last_seen_at: datetime | None = None


class Payer(BaseModel):
    """An incoming-transfer payer, by pseudonymous key: the months it paid in, the last time."""

    months: list[int] = []
    last_at: datetime
    last_event_id: str

    @property
    def recurring(self) -> bool:
        """Seen in at least two consecutive months."""
        return any(b - a == 1 for a, b in zip(self.months, self.months[1:], strict=False))


class Outflow(BaseModel):
    """Money that left the customer: when, how much, and whether to another bank."""

    at: datetime
    amount: Decimal
    external: bool
    event_id: str


class CustomerState(BaseModel):
    """Everything the lifecycle rules need to know about one customer."""

    model_config = ConfigDict(validate_assignment=False)

    customer_id: str
    # Bumped at every save; the read model keeps the highest version it was given.
    version: int = 0
    stage: Stage | None = None
    stage_since: datetime | None = None
    tier: Tier = Tier.MASS
    win_back: bool = False
    relationship_start: datetime | None = None
    # Anniversaries of relationship_start already behind the customer (announced, or passed
    # before the service first saw them); None in states saved before anniversaries existed.
    anniversaries_passed: int | None = None
    # From customer.updated: the birthday, the time zone it is reckoned in, and the last year
    # a birthday was announced (or passed before it was known).
    birthday: date | None = None
    time_zone: str | None = None
    birthday_year_done: int | None = None
    activated: bool = False
    matured_once: bool = False
    initiated_count: int = 0
    last_activity_at: datetime | None = None
    last_event_at: datetime | None = None
    evaluated_until: datetime | None = None
    open_accounts: list[str] = []
    open_products: dict[str, str] = {}
    balances: dict[str, Decimal] = {}
    balance_as_of: dict[str, datetime] = {}
    daily_totals: dict[int, Decimal] = {}
    signals: dict[SignalKind, OpenSignal] = {}
    payers: dict[str, Payer] = {}
    outflows: list[Outflow] = []
    complaints: list[tuple[datetime, str]] = []
    pending_closures: dict[str, tuple[datetime, str]] = {}
    recent_event_ids: dict[str, datetime] = {}

    @property
    def total_balance(self) -> Decimal:
        """Sum of the latest balance of every account."""
        return sum(self.balances.values(), Decimal(0))


Output = StageChanged | ChurnSignalChanged | TenureAnniversary | CustomerBirthday


@dataclass
class Outcome:
    """What applying one event (or one step of time) did."""

    state: CustomerState
    outputs: list[Output] = field(default_factory=list)
    duplicate: bool = False


def _day(t: datetime) -> int:
    return t.toordinal()


def _event_id(*parts: object) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "|".join(str(p) for p in parts)))


# -- balances over time ----------------------------------------------------------------------


def _runs(state: CustomerState, t: datetime, days: int) -> list[tuple[int, Decimal, int]]:
    """End-of-day total balances for the `days` days ending at t as runs of equal days (first
    day, total, days), carrying the last known value forward; days before the first known
    balance are left out. Runs, not days: the averages are asked for at every evaluation."""
    totals = state.daily_totals
    end = _day(t)
    start = end - days + 1
    before = [day for day in totals if day < start]
    day, value = (start, totals[max(before)]) if before else (start, None)
    runs = []
    for changed in sorted(d for d in totals if start <= d <= end):
        if value is not None and changed > day:
            runs.append((day, value, changed - day))
        day, value = changed, totals[changed]
    if value is not None:
        runs.append((day, value, end + 1 - day))
    return runs


def average_balance(state: CustomerState, t: datetime, days: int) -> Decimal:
    """Average end-of-day total balance over the last `days` days."""
    runs = _runs(state, t, days)
    if not runs:
        return Decimal(0)
    total = sum((value * length for _, value, length in runs), Decimal(0))
    return (total / sum(length for _, _, length in runs)).quantize(Decimal("0.01"))


def _max_balance(state: CustomerState, t: datetime, days: int) -> tuple[Decimal, int]:
    """The highest end-of-day total in the window and its (first) day."""
    best, best_day = Decimal(0), _day(t)
    for first_day, value, _ in _runs(state, t, days):
        if value > best:
            best, best_day = value, first_day
    return best, best_day


# -- stage and tier --------------------------------------------------------------------------


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


def _reevaluate(
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
                event_id=_event_id(
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


# -- churn signals ---------------------------------------------------------------------------


def _signal_event(
    state: CustomerState, kind: SignalKind, change: str, t: datetime, signal: OpenSignal
) -> ChurnSignalChanged:
    return ChurnSignalChanged(
        event_id=_event_id(state.customer_id, "signal", kind, change, t.isoformat()),
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
    )


def _raise(
    state: CustomerState,
    kind: SignalKind,
    t: datetime,
    rules: LifecycleRules,
    evidence: dict[str, Any],
    cause: ChurnCause | None = None,
    reference: Decimal = Decimal(0),
) -> list[Output]:
    if kind in state.signals:
        return []
    signal = OpenSignal(
        cause=cause or _CAUSE[kind],
        raised_at=t,
        weight=rules.weights[kind],
        evidence=evidence,
        reference=reference,
        last_seen_at=t,
    )
    state.signals[kind] = signal
    return [_signal_event(state, kind, "raised", t, signal)]


def _escalate(
    state: CustomerState, kind: SignalKind, t: datetime, rules: LifecycleRules, **evidence: Any
) -> list[Output]:
    signal = state.signals.get(kind)
    if signal is None or signal.escalated:
        return []
    signal.escalated = True
    signal.weight = max(signal.weight, rules.escalated_weight)
    signal.evidence = {**signal.evidence, **evidence}
    return [_signal_event(state, kind, "escalated", t, signal)]


def _resolve(state: CustomerState, kind: SignalKind, t: datetime, why: str) -> list[Output]:
    signal = state.signals.pop(kind, None)
    if signal is None:
        return []
    signal.evidence = {**signal.evidence, "resolved_because": why}
    return [_signal_event(state, kind, "resolved", t, signal)]


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def _check_balance_drain(
    state: CustomerState, t: datetime, event_id: str, rules: LifecycleRules
) -> list[Output]:
    total = state.total_balance
    open_signal = state.signals.get(SignalKind.BALANCE_DRAIN)
    if open_signal is not None:
        if total >= open_signal.reference * rules.drain_recovered_ratio:
            return _resolve(state, SignalKind.BALANCE_DRAIN, t, "balance recovered")
        if total <= open_signal.reference * rules.drain_escalate_ratio:
            return _escalate(
                state, SignalKind.BALANCE_DRAIN, t, rules, escalated_balance=_money(total)
            )
        return []
    reference, reference_day = _max_balance(state, t, 30)
    if reference < rules.drain_min_reference or total > reference * rules.drain_ratio:
        return []
    since = datetime.fromordinal(reference_day).replace(tzinfo=t.tzinfo)
    flows = [o for o in state.outflows if o.at >= since]
    outflow = sum((o.amount for o in flows), Decimal(0))
    external = sum((o.amount for o in flows if o.external), Decimal(0))
    if outflow and external * 2 > outflow:
        cause = ChurnCause.COMPETITOR_ATTRACTION
    elif SignalKind.COMPLAINT in state.signals:
        # Savings leaving right after a complaint are the complaint's consequence, not hardship.
        cause = ChurnCause.SERVICE_DISSATISFACTION
    else:
        cause = ChurnCause.FINANCIAL_DISTRESS
    evidence = {
        "max_balance_30d": _money(reference),
        "max_balance_date": since.date().isoformat(),
        "balance": _money(total),
        "outflow": _money(outflow),
        "outflow_to_other_banks": _money(external),
        "event_ids": [o.event_id for o in flows][-10:] or [event_id],
    }
    return _raise(state, SignalKind.BALANCE_DRAIN, t, rules, evidence, cause, reference)


def _check_competitor_transfer(
    state: CustomerState, t: datetime, rules: LifecycleRules
) -> list[Output]:
    window = [o for o in state.outflows if o.external and t - o.at < rules.spans.competitor_window]
    moved = sum((o.amount for o in window), Decimal(0))
    before = state.total_balance + moved
    if not window or before <= 0 or moved < before * rules.competitor_share:
        return []
    signal = state.signals.get(SignalKind.COMPETITOR_TRANSFER)
    if signal is not None:
        signal.last_seen_at = t
        return []
    evidence = {
        "moved_to_other_banks_7d": _money(moved),
        "balance_before": _money(before),
        "share": f"{moved / before:.2f}",
        "event_ids": [o.event_id for o in window][-10:],
    }
    return _raise(state, SignalKind.COMPETITOR_TRANSFER, t, rules, evidence)


# -- time ------------------------------------------------------------------------------------


def anniversary(start: datetime, years: int) -> datetime:
    """`start` plus whole years; a 29 February start has its anniversary on 28 February."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return start.replace(year=start.year + years, day=28)


def _years_completed(start: datetime, t: datetime) -> int:
    years = max(t.year - start.year, 0)
    while years > 0 and anniversary(start, years) > t:
        years -= 1
    return years


def _next_anniversary(state: CustomerState) -> datetime | None:
    if state.relationship_start is None or state.anniversaries_passed is None:
        return None
    return anniversary(state.relationship_start, state.anniversaries_passed + 1)


def _anniversaries(state: CustomerState, t: datetime) -> list[Output]:
    outputs: list[Output] = []
    due = _next_anniversary(state)
    while due is not None and due <= t and state.stage is not None:
        assert state.relationship_start is not None and state.anniversaries_passed is not None
        state.anniversaries_passed += 1
        outputs.append(
            TenureAnniversary(
                event_id=_event_id(
                    state.customer_id, "anniversary", state.relationship_start.isoformat(), due
                ),
                type="tenure.anniversary",
                occurred_at=due,
                customer_id=state.customer_id,
                years=state.anniversaries_passed,
                relationship_start=state.relationship_start,
                stage=state.stage,
                tier=state.tier,
            )
        )
        due = _next_anniversary(state)
    return outputs


def _birthday_in(state: CustomerState, year: int) -> datetime:
    """Midnight of the customer's birthday in `year`, in their time zone, as UTC."""
    assert state.birthday is not None
    return _midnight_of_birthday(state.birthday, year, state.time_zone or DEFAULT_TIME_ZONE)


@lru_cache(maxsize=4096)
def _midnight_of_birthday(birthday: date, year: int, time_zone: str) -> datetime:
    # Asked for at every deadline check: the time zone arithmetic is a tenth of the rules' time.
    try:
        day = birthday.replace(year=year)
    except ValueError:  # 29 February in a common year
        day = birthday.replace(year=year, day=28)
    return datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(time_zone)).astimezone(UTC)


def _next_birthday(state: CustomerState) -> datetime | None:
    if state.birthday is None or state.birthday_year_done is None:
        return None
    return _birthday_in(state, state.birthday_year_done + 1)


def _birthdays(state: CustomerState, t: datetime) -> list[Output]:
    outputs: list[Output] = []
    due = _next_birthday(state)
    while due is not None and due <= t and state.stage is not None:
        assert state.birthday_year_done is not None
        state.birthday_year_done += 1
        outputs.append(
            CustomerBirthday(
                event_id=_event_id(state.customer_id, "birthday", state.birthday_year_done),
                type="customer.birthday",
                occurred_at=due,
                customer_id=state.customer_id,
                stage=state.stage,
                tier=state.tier,
            )
        )
        due = _next_birthday(state)
    return outputs


def _learn_birthday(state: CustomerState, event: CustomerUpdated) -> None:
    """Take the birthday and time zone; birthdays already behind the customer are not
    announced."""
    profile = event.profile
    state.time_zone = profile.time_zone or state.time_zone
    if profile.birthday is None or profile.birthday == state.birthday:
        return
    state.birthday = profile.birthday
    t = event.occurred_at
    this_year = _birthday_in(state, t.year)
    state.birthday_year_done = t.year if this_year <= t else t.year - 1


def _deadlines(state: CustomerState, rules: LifecycleRules) -> list[datetime]:
    """Every future moment at which a time rule could change something for this customer."""
    if state.relationship_start is None or not state.open_accounts:
        return []
    quiet_since = state.last_activity_at or state.relationship_start
    found = [
        quiet_since + rules.spans.dormant_after,
        quiet_since + rules.spans.inactivity,
        state.relationship_start + rules.spans.maturity_tenure,
    ]
    for upcoming in (_next_anniversary(state), _next_birthday(state)):
        if upcoming is not None:
            found.append(upcoming)
    if not state.activated:
        found.append(state.relationship_start + rules.spans.activation_window)
    if state.last_activity_at is not None:
        found.append(state.last_activity_at + rules.spans.maturity_recent_activity)
    for payer in state.payers.values():
        if payer.recurring:
            found.append(payer.last_at + rules.spans.salary_missing)
    for closed_at, _ in state.pending_closures.values():
        found.append(closed_at + rules.spans.product_replacement)
    if state.complaints:
        found.append(state.complaints[-1][0] + rules.spans.complaint_window)
    competitor = state.signals.get(SignalKind.COMPETITOR_TRANSFER)
    if competitor is not None and competitor.last_seen_at is not None:
        found.append(competitor.last_seen_at + rules.spans.competitor_quiet)
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


def _time_rules(state: CustomerState, t: datetime, rules: LifecycleRules) -> list[Output]:
    outputs = _anniversaries(state, t) + _birthdays(state, t)
    quiet_since = state.last_activity_at or state.relationship_start
    assert quiet_since is not None
    if t - quiet_since >= rules.spans.inactivity:
        outputs += _raise(
            state,
            SignalKind.INACTIVITY,
            t,
            rules,
            {"last_activity_at": quiet_since.isoformat(), "days_quiet": (t - quiet_since).days},
        )
    for key, payer in state.payers.items():
        if payer.recurring and t - payer.last_at >= rules.spans.salary_missing:
            outputs += _raise(
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
            outputs += _raise(
                state,
                SignalKind.PRODUCT_CLOSURE,
                t,
                rules,
                {"category": category, "closed_at": closed_at.isoformat(), "event_ids": [event_id]},
            )
    window = rules.spans.complaint_window
    state.complaints = [c for c in state.complaints if t - c[0] < window]
    if SignalKind.COMPLAINT in state.signals and not state.complaints:
        outputs += _resolve(state, SignalKind.COMPLAINT, t, "no new complaint for 30 days")
    competitor = state.signals.get(SignalKind.COMPETITOR_TRANSFER)
    if (
        competitor is not None
        and competitor.last_seen_at is not None
        and t - competitor.last_seen_at >= rules.spans.competitor_quiet
    ):
        outputs += _resolve(
            state, SignalKind.COMPETITOR_TRANSFER, t, "no transfers to other banks for 30 days"
        )
    return outputs


def advance(state: CustomerState, now: datetime, rules: LifecycleRules) -> list[Output]:
    """Let time pass up to `now` (event time): fire every due time rule at its own moment."""
    outputs: list[Output] = []
    for _ in range(64):  # a handful of deadlines at most; the bound guards against a rule bug
        due = next_deadline(state, rules)
        if due is None or due > now:
            break
        state.evaluated_until = due
        outputs += _time_rules(state, due, rules)
        outputs += _reevaluate(state, due, None, rules)
    return outputs


# -- events ----------------------------------------------------------------------------------


def _remember(state: CustomerState, event: AccountEvent) -> bool:
    """Record the event id; False when it was seen before (a duplicate)."""
    if event.event_id in state.recent_event_ids:
        return False
    state.recent_event_ids[event.event_id] = event.occurred_at
    if len(state.recent_event_ids) > 256:
        # Duplicates arrive close to the original; keep the newest ids only.
        newest = sorted(state.recent_event_ids.items(), key=lambda kv: kv[1])[-128:]
        state.recent_event_ids = dict(newest)
    return True


def _record_balance(state: CustomerState, account_id: str, balance: Decimal, t: datetime) -> None:
    as_of = state.balance_as_of.get(account_id)
    if as_of is None or t >= as_of:
        state.balances[account_id] = balance
        state.balance_as_of[account_id] = t
    state.daily_totals[_day(t)] = state.total_balance
    oldest = _day(t) - 90
    older = sorted(d for d in state.daily_totals if d < oldest)
    # The newest of the older days stays: it is the value carried into the 90-day window.
    for day in older[:-1]:
        del state.daily_totals[day]


def apply_event(
    state: CustomerState | None,
    event: AccountEvent,
    now: datetime,
    rules: LifecycleRules,
    counterparty_key: str | None = None,
    *,
    owned: bool = False,
) -> Outcome:
    """Apply one account event. `now` is the stream's clock (highest event time seen less the
    allowed lateness); time rules due by then fire first, each dated at its own deadline.
    The given state is left as it was, unless the caller says it `owned` it (a state freshly
    loaded for this call): then it is changed in place, saving a deep copy per event (a third
    of the rules' time)."""
    if state is None:
        state = CustomerState(customer_id=event.customer_id)
    elif not owned:
        state = state.model_copy(deep=True)
    if not _remember(state, event):
        return Outcome(state, duplicate=True)
    if state.relationship_start is not None and state.anniversaries_passed is None:
        state.anniversaries_passed = _years_completed(
            state.relationship_start, min(now, event.occurred_at)
        )
    outputs: list[Output] = []
    if state.relationship_start is not None and state.open_accounts:
        outputs += advance(state, min(now, event.occurred_at), rules)
    t = event.occurred_at
    state.last_event_at = max(state.last_event_at or t, t)
    kind = EventType(event.event_type)
    customer_event = kind in CUSTOMER_INITIATED

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
                outputs += _resolve(state, signal, t, "the customer closed the last account")
    elif isinstance(event, ProductOpened):
        state.open_products[event.product.product_id] = event.product.category
        state.pending_closures.pop(event.product.category, None)
        outputs += _resolve(state, SignalKind.PRODUCT_CLOSURE, t, "a product was taken up")
    elif isinstance(event, ProductClosed):
        state.open_products.pop(event.product.product_id, None)
        state.pending_closures[event.product.category] = (t, event.event_id)
    elif isinstance(event, CustomerUpdated):
        _learn_birthday(state, event)
    elif isinstance(event, ComplaintFiled):
        window = rules.spans.complaint_window
        state.complaints = [c for c in state.complaints if t - c[0] < window] + [
            (t, event.event_id)
        ]
        evidence = {
            "event_ids": [c[1] for c in state.complaints],
            "complaints_30d": len(state.complaints),
        }
        if SignalKind.COMPLAINT not in state.signals:
            outputs += _raise(state, SignalKind.COMPLAINT, t, rules, evidence)
        if len(state.complaints) >= rules.complaint_escalate_count:
            outputs += _escalate(
                state,
                SignalKind.COMPLAINT,
                t,
                rules,
                complaints_30d=len(state.complaints),
                event_ids=[c[1] for c in state.complaints],
            )
    elif isinstance(event, TransferIn) and counterparty_key is not None:
        month = t.year * 12 + t.month - 1
        payer = state.payers.get(counterparty_key) or Payer(last_at=t, last_event_id=event.event_id)
        payer.months = sorted({*payer.months, month})[-3:]
        if t >= payer.last_at:
            payer.last_at, payer.last_event_id = t, event.event_id
        state.payers[counterparty_key] = payer
        if len(state.payers) > 5:
            oldest = min(state.payers, key=lambda k: state.payers[k].last_at)
            del state.payers[oldest]
        salary = state.signals.get(SignalKind.SALARY_STOPPED)
        if salary is not None and salary.evidence.get("payer") == counterparty_key:
            outputs += _resolve(state, SignalKind.SALARY_STOPPED, t, "the payer paid in again")

    balance_after = getattr(event, "balance_after", None)
    if balance_after is not None and event.account_id is not None:
        if isinstance(event, Withdrawal | TransferOut | CardPayment):
            external = isinstance(event, TransferOut) and (
                event.counterparty.bank_code.strip().upper() != rules.own_bank_code.upper()
            )
            state.outflows.append(
                Outflow(at=t, amount=event.amount, external=external, event_id=event.event_id)
            )
            state.outflows = [o for o in state.outflows if t - o.at < _31_DAYS]
        _record_balance(state, event.account_id, balance_after, t)

    if customer_event:
        state.last_activity_at = max(state.last_activity_at or t, t)
        state.initiated_count += 1
        outputs += _resolve(state, SignalKind.INACTIVITY, t, "customer activity resumed")
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
        outputs += _check_balance_drain(state, t, event.event_id, rules)
        if kind is EventType.TRANSFER_OUT:
            outputs += _check_competitor_transfer(state, t, rules)
    if state.relationship_start is not None:
        # evaluated_until stays where the clock left it: deadlines between the stream clock and
        # this event are checked later, against the state as it will be then.
        outputs += _reevaluate(state, t, event.event_id, rules)
    return Outcome(state, outputs)
