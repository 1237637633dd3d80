"""Scores what the services concluded against the simulator's truth. Pure: outputs (decoded JSON
events per topic) and truth in, an `Evaluation` out; `report.py` writes it down.

Definitions (docs/simulator.md states them for readers of the report):
- a churner is *detected* when the customer entered `at_risk` between 30 days before the onset
  of the behaviour change and the closure of the last account;
- the *predicted cause* is the `probable_cause` of that first `at_risk` change;
- *lead time* is the days from that change to the closure;
- a *flag* is an entry into `at_risk` on or after `evaluate_from`; it is *right* when the
  customer truly churned (any cause) within 120 days after it;
- a *false alarm* is a flag on a stable customer (one whose behaviour never changes);
- customers who *keep transacting* are those with no silence of their own (no `quiet_from` in
  the truth) who are not churners (nor planted fraud referees, nor never-active customers); the
  share of them ever flagged is given per year of the scored period.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, Field

from schemas.topics import (
    ACCOUNT_EVENTS,
    CHURN_SIGNALS,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SERVICE,
    MILESTONES,
    NOTIFICATIONS,
    REFERRAL_EVENTS,
    REWARDS_LEDGER,
    RM_TASKS,
    STAGE_CHANGED,
)
from services.simulator.truth import Truth

DETECTION_BEFORE_ONSET = timedelta(days=30)
# A bank acts on moved standing orders only with time to call before the account closes.
PAYMENTS_MOVED_LEAD = timedelta(days=14)
FLAG_HORIZON = timedelta(days=120)
# Leads ranked by their score: the top tenth is what an RM works first. The list is judged as
# it stood each week, by the accounts opened in the quarter after it.
TOP_LEADS = 0.10
LEAD_LIST_EVERY = timedelta(days=7)
LEAD_HORIZON = timedelta(days=90)
DAYS_PER_YEAR = 365.0
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
# Customers who are not expected to transact: an alarm on them is not about ordinary life.
NOT_TRANSACTING = frozenset({"never_active", "fraud_referee"})
CAUSES = (
    "competitor_attraction",
    "service_dissatisfaction",
    "financial_distress",
    "disengagement",
)
STAGES = ("acquisition", "growth", "maturity", "at_risk", "dormant", "churned")


OUTPUT_TOPICS = (
    STAGE_CHANGED.name,
    CHURN_SIGNALS.name,
    MILESTONES.name,
    REFERRAL_EVENTS.name,
    REWARDS_LEDGER.name,
    NOTIFICATIONS.name,
    RM_TASKS.name,
)
INPUT_DLQ = ACCOUNT_EVENTS.dlq
# Rapport's own outputs that a consuming service refused: a contract bug, always.
OUTPUT_DLQS = tuple(
    t.dlq for t in (STAGE_CHANGED, CHURN_SIGNALS, MILESTONES, REFERRAL_EVENTS, REWARDS_LEDGER)
)
EVALUATED_TOPICS = (*OUTPUT_TOPICS, INPUT_DLQ, *OUTPUT_DLQS)


class _Record(Protocol):
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> dict[str, bytes]: ...


def decode_outputs(
    records: Mapping[str, Sequence[_Record]], since: Mapping[str, Mapping[int, int]]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, int]]]:
    """Output events by topic, and the input's dead letters per service and reason, counting
    only records at or after `since` (a topic's offsets when the feed was produced)."""
    outputs: dict[str, list[dict[str, Any]]] = {topic: [] for topic in OUTPUT_TOPICS}
    dead: dict[str, Counter[str]] = defaultdict(Counter)
    for topic, found in records.items():
        marks = since.get(topic, {})
        for record in found:
            if record.offset < marks.get(record.partition, 0):
                continue
            service = record.headers.get(DLQ_HEADER_SERVICE, b"?").decode()
            reason = record.headers.get(DLQ_HEADER_REASON, b"?").decode()
            if topic == INPUT_DLQ:
                dead[service][reason] += 1
            elif topic in OUTPUT_DLQS:
                outputs.setdefault(topic, []).append({"service": service, "reason": reason})
            elif record.value:
                outputs.setdefault(topic, []).append(orjson.loads(record.value))
    return outputs, {service: dict(reasons) for service, reasons in dead.items()}


class CauseScore(BaseModel):
    churners: int
    detected: int
    recall: float | None
    flagged_with_cause: int
    precision: float | None
    cause_right: int


class ChurnDetection(BaseModel):
    churners: int
    detected: int
    recall: float | None
    flags: int
    right_flags: int
    precision: float | None
    cause_accuracy: float | None
    lead_time_days_median: float | None
    lead_time_days_p10: float | None
    lead_times_days: list[float]
    stable_customers: int
    false_alarms: int
    false_alarms_per_1000_stable: float | None
    by_cause: dict[str, CauseScore]
    # Customers who keep transacting (see the module's docstring), those of them ever flagged
    # from `evaluate_from` on, and that share per year of the scored period.
    transacting_customers: int = 0
    transacting_flagged: int = 0
    transacting_flagged_share_per_year: float | None = None


class FeedShapes(BaseModel):
    """How the rules read the shapes of real core-banking feeds: the bank's own postings on
    silent accounts, bills paid to other institutions, standing orders and direct debits
    moved to another bank."""

    # Customers who used the account, then whose own transactions stopped for QUIET_DAYS or
    # more while interest, fees or payments on standing instructions kept coming, and how
    # many got `inactivity`. An account opened and never used is not disengagement: the
    # dormant rule takes it.
    quiet_with_postings: int
    quiet_flagged_inactive: int
    quiet_recall: float | None
    # Competitor signals (`competitor_transfer`, or a `balance_drain` blamed on a competitor)
    # on customers who moved none of their own money to another institution: every such
    # customer pays bills there, so each is a false alarm from bills.
    competitor_alarms_without_money_moved: int
    # Churners who moved their standing orders and direct debits before closing, and how many
    # got `payments_moved` at least `PAYMENTS_MOVED_LEAD` before the closure.
    bill_movers: int
    bill_movers_flagged_14_days_before: int
    bill_movers_recall: float | None
    # `payments_moved` on customers who moved no payments (a supplier changed, a mandate
    # cancelled now and then).
    payments_moved_false_alarms: int


class StageSeries(BaseModel):
    """Customers per stage at the end of each week."""

    weeks: list[str]
    counts: dict[str, list[int]]


class DeadLetters(BaseModel):
    expected: dict[str, int]
    by_service: dict[str, dict[str, int]]
    matches: dict[str, bool]
    # "<service>: <output topic>" -> reason -> count; should stay empty.
    outputs_refused: dict[str, dict[str, int]] = Field(default_factory=dict)


class Section(BaseModel):
    """A service's section: `running` False says the service produced nothing to score."""

    running: bool
    note: str = ""
    figures: dict[str, Any] = Field(default_factory=dict)


class Evaluation(BaseModel):
    seed: int
    profile: str = "standard"
    customers: int
    days: int
    evaluate_from: datetime
    outputs: dict[str, int]
    churn: ChurnDetection | None
    feeds: FeedShapes | None = None
    stages: StageSeries | None
    referral: Section
    rewards: Section
    notify: Section
    dead_letters: DeadLetters


def _at(event: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["occurred_at"]))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(share * len(ordered) + 0.999999) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def stage_entries(stage_events: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Each customer's `stage.changed` events in event-time order, duplicates (same id) once."""
    seen: set[str] = set()
    by_customer: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in stage_events:
        if event.get("type") != "stage.changed" or event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        by_customer[event["customer_id"]].append(event)
    for events in by_customer.values():
        events.sort(key=_at)
    return by_customer


def churn_detection(truth: Truth, stage_events: Iterable[Mapping[str, Any]]) -> ChurnDetection:
    entries = stage_entries(stage_events)
    at_risk = {
        customer: [e for e in events if e["stage"] == "at_risk"]
        for customer, events in entries.items()
    }
    churned_by: dict[str, datetime] = {}
    for customer, known in truth.customers.items():
        if known.churn is not None:
            churned_by[customer] = known.churn.churned_at or known.churn.planned_at

    scores = {
        cause: {"churners": 0, "detected": 0, "flagged": 0, "right": 0, "cause_right": 0}
        for cause in CAUSES
    }
    lead_times: list[float] = []
    detected = cause_right = churners = 0
    for customer, known in truth.customers.items():
        churn = known.churn
        if churn is None or churn.churned_at is None or churn.churned_at < truth.evaluate_from:
            continue
        churners += 1
        scores[churn.cause]["churners"] += 1
        window_start = churn.onset - DETECTION_BEFORE_ONSET
        hits = [e for e in at_risk.get(customer, []) if window_start <= _at(e) <= churn.churned_at]
        if not hits:
            continue
        detected += 1
        scores[churn.cause]["detected"] += 1
        lead_times.append(round((churn.churned_at - _at(hits[0])).total_seconds() / 86400, 2))
        if hits[0].get("probable_cause") == churn.cause:
            cause_right += 1
            scores[churn.cause]["cause_right"] += 1

    flags = right = 0
    stable = [c for c, t in truth.customers.items() if t.stable]
    false_alarms = sum(
        1 for c in stable if any(_at(e) >= truth.evaluate_from for e in at_risk.get(c, []))
    )
    transacting = [
        c
        for c, t in truth.customers.items()
        if t.churn is None and t.quiet_from is None and t.persona not in NOT_TRANSACTING
    ]
    transacting_flagged = sum(
        1 for c in transacting if any(_at(e) >= truth.evaluate_from for e in at_risk.get(c, []))
    )
    scored_years = (truth.end - truth.evaluate_from).total_seconds() / 86400 / DAYS_PER_YEAR
    for customer, events in at_risk.items():
        for event in events:
            at = _at(event)
            if at < truth.evaluate_from:
                continue
            flags += 1
            churn_at = churned_by.get(customer)
            is_right = churn_at is not None and at <= churn_at <= at + FLAG_HORIZON
            right += is_right
            cause = event.get("probable_cause")
            if cause in scores:
                scores[cause]["flagged"] += 1
                scores[cause]["right"] += is_right

    return ChurnDetection(
        churners=churners,
        detected=detected,
        recall=_ratio(detected, churners),
        flags=flags,
        right_flags=right,
        precision=_ratio(right, flags),
        cause_accuracy=_ratio(cause_right, detected),
        lead_time_days_median=statistics.median(lead_times) if lead_times else None,
        lead_time_days_p10=_percentile(lead_times, 0.10),
        lead_times_days=sorted(lead_times),
        stable_customers=len(stable),
        false_alarms=false_alarms,
        false_alarms_per_1000_stable=round(false_alarms * 1000 / len(stable), 1)
        if stable
        else None,
        by_cause={
            cause: CauseScore(
                churners=s["churners"],
                detected=s["detected"],
                recall=_ratio(s["detected"], s["churners"]),
                flagged_with_cause=s["flagged"],
                precision=_ratio(s["right"], s["flagged"]),
                cause_right=s["cause_right"],
            )
            for cause, s in scores.items()
        },
        transacting_customers=len(transacting),
        transacting_flagged=transacting_flagged,
        transacting_flagged_share_per_year=round(
            transacting_flagged / len(transacting) / scored_years, 4
        )
        if transacting and scored_years > 0
        else None,
    )


def _raised(signals: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Each customer's `churn_signal.raised` events, duplicates (same id) once."""
    seen: set[str] = set()
    by_customer: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for event in signals:
        if event.get("type") != "churn_signal.raised" or event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        by_customer[str(event["customer_id"])].append(event)
    return by_customer


def feed_shapes(truth: Truth, signals: Iterable[Mapping[str, Any]]) -> FeedShapes:
    """Scores of the rules on what real feeds carry (see `FeedShapes`)."""
    raised = _raised(signals)

    def kinds(customer: str, since: datetime) -> dict[str, list[Mapping[str, Any]]]:
        found: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for event in raised.get(customer, []):
            if _at(event) >= since:
                found[str(event["signal"])].append(event)
        return found

    quiet = [
        c
        for c, t in truth.customers.items()
        if t.quiet_from and t.postings_while_quiet and t.persona not in NOT_TRANSACTING
    ]
    inactive = sum(
        1 for c in quiet if kinds(c, truth.customers[c].quiet_from or truth.start).get("inactivity")
    )
    competitor_alarms = 0
    payments_false = 0
    for customer, known in truth.customers.items():
        found = kinds(customer, truth.evaluate_from)
        if not known.moved_money and (
            found.get("competitor_transfer")
            or any(
                e.get("cause") == "competitor_attraction" for e in found.get("balance_drain", [])
            )
        ):
            competitor_alarms += 1
        moved_payments = known.churn is not None and known.churn.payments_moved_at is not None
        if not moved_payments and found.get("payments_moved"):
            payments_false += 1
    movers = [
        (c, t.churn)
        for c, t in truth.customers.items()
        if t.churn is not None
        and t.churn.payments_moved_at is not None
        and t.churn.churned_at is not None
        and t.churn.churned_at >= truth.evaluate_from
    ]
    early = 0
    for customer, churn in movers:
        assert churn is not None and churn.churned_at is not None
        flags = kinds(customer, churn.onset - DETECTION_BEFORE_ONSET).get("payments_moved", [])
        early += any(_at(e) <= churn.churned_at - PAYMENTS_MOVED_LEAD for e in flags)
    return FeedShapes(
        quiet_with_postings=len(quiet),
        quiet_flagged_inactive=inactive,
        quiet_recall=_ratio(inactive, len(quiet)),
        competitor_alarms_without_money_moved=competitor_alarms,
        bill_movers=len(movers),
        bill_movers_flagged_14_days_before=early,
        bill_movers_recall=_ratio(early, len(movers)),
        payments_moved_false_alarms=payments_false,
    )


def stage_series(truth: Truth, stage_events: Iterable[Mapping[str, Any]]) -> StageSeries:
    """Each customer's stage at the end of every week of the simulated period."""
    entries = stage_entries(stage_events)
    weeks: list[datetime] = []
    week = truth.start + timedelta(days=7)
    while week <= truth.end:
        weeks.append(week)
        week += timedelta(days=7)
    counts = {stage: [0] * len(weeks) for stage in STAGES}
    for events in entries.values():
        i = 0
        stage: str | None = None
        for n, week_end in enumerate(weeks):
            while i < len(events) and _at(events[i]) < week_end:
                stage = str(events[i]["stage"])
                i += 1
            if stage is not None:
                counts[stage][n] += 1
    return StageSeries(weeks=[w.date().isoformat() for w in weeks], counts=counts)


def dead_letters(
    truth: Truth,
    dlq: Mapping[str, Mapping[str, int]],
    refused: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> DeadLetters:
    """`dlq`: per consuming service, dead letters of the input topic by reason. Every service
    that reads the input must dead-letter exactly what the truth expects. `refused`: dead
    letters of Rapport's own output topics, by DLQ topic; there should be none."""
    expected = truth.noise.expected_dead_letters
    outputs_refused: dict[str, Counter[str]] = defaultdict(Counter)
    for topic, records in (refused or {}).items():
        for r in records:
            outputs_refused[f"{r['service']}: {topic.removesuffix('.dlq')}"][str(r["reason"])] += 1
    return DeadLetters(
        expected=dict(expected),
        by_service={service: dict(reasons) for service, reasons in dlq.items()},
        matches={service: dict(reasons) == dict(expected) for service, reasons in dlq.items()},
        outputs_refused={k: dict(v) for k, v in sorted(outputs_refused.items())},
    )


def _not_running(topic: str) -> Section:
    return Section(
        running=False,
        note=f"no events on {topic}: the service is not running, or not built yet",
    )


def referral_section(
    truth: Truth,
    events: Sequence[Mapping[str, Any]],
    key_of: Callable[[str, str], str] | None = None,
) -> Section:
    """Leads found against the counterparties that really converted (`key_of` pseudonymises a
    bank code and account as the referral service does), attribution against the true
    introducer, and the planted fraud caught."""
    if not events:
        return _not_running(REFERRAL_EVENTS.name)
    types = Counter(str(e.get("type")) for e in events)
    attributed = {
        str(e.get("referee")): str(e.get("referrer"))
        for e in events
        if e.get("type") == "referral.attributed"
    }
    conversions = truth.conversions
    right = [c for c in conversions if attributed.get(c.customer_id) == c.introduced_by]
    flagged = {
        str(e.get("referee"))
        for e in events
        if e.get("type") in ("referral.rejected", "referral.held")
    }
    outcomes = referral_outcomes(events)
    caught: dict[str, int] = {}
    planted: dict[str, int] = {}
    for case in truth.fraud:
        caught[case.pattern] = caught.get(case.pattern, 0) + len(set(case.referees) & flagged)
        planted[case.pattern] = planted.get(case.pattern, 0) + len(case.referees)
    figures: dict[str, Any] = {
        "events_by_type": dict(sorted(types.items())),
        "true_conversions": len(conversions),
        "conversions_attributed_to_the_true_introducer": len(right),
        "attribution_accuracy": _ratio(len(right), len(conversions)),
        "attribution_accuracy_by_path": {
            via: _ratio(
                sum(1 for c in right if c.via == via),
                sum(1 for c in conversions if c.via == via),
            )
            for via in ("code", "chain")
        },
        # Per pattern (summed over the rings of every length): referees rejected or held.
        "fraud_referees_caught": caught,
        "fraud_referees": planted,
        # Per pattern (rings by length): how the planted referees' referrals ended.
        "fraud_outcomes": fraud_outcomes(truth, outcomes),
        **genuine_outcomes(truth, outcomes),
        # Attributed referees the truth knows no referrer for (e.g. a new employee whose first
        # salary comes from an employer that is a lead): the rule's false positives. Scored from
        # `evaluate_from` on, like the churn flags: before it, the service has not yet seen a
        # month of payroll to tell an employer by.
        "attributions_without_a_true_referrer": len(
            {
                str(e.get("referee"))
                for e in events
                if e.get("type") == "referral.attributed" and _at(e) >= truth.evaluate_from
            }
            - {c.customer_id for c in conversions}
            - {r for case in truth.fraud for r in case.referees}
        ),
    }
    if key_of is not None:
        first_lead: dict[str, datetime] = {}
        for e in events:
            if e.get("type") == "lead.detected":
                key, at = str(e.get("counterparty_key")), _at(e)
                first_lead[key] = min(first_lead.get(key, at), at)
        never = datetime.max.replace(tzinfo=truth.start.tzinfo)
        found = [
            c
            for c in conversions
            if first_lead.get(key_of(c.counterparty.bank_code, c.counterparty.account), never)
            <= c.opened_at
        ]
        figures["converted_counterparties_that_were_leads_before"] = len(found)
        figures["lead_recall"] = _ratio(len(found), len(conversions))
        figures["leads_detected"] = types.get("lead.detected", 0)
        figures["leads_expired"] = types.get("lead.expired", 0)
    figures.update(lead_figures(truth, events, key_of))
    return Section(running=True, figures=figures)


STOPPED = ("rejected", "held", "reversed")


def referral_outcomes(events: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Per referee, how its referrals were stopped: `rejected`, `held`, `reversed` (a reversal
    for an early exit is the referee leaving, not a guard stopping fraud, and is left out)."""
    found: dict[str, set[str]] = defaultdict(set)
    for e in events:
        kind = str(e.get("type", ""))
        if not kind.startswith("referral.") or kind.removeprefix("referral.") not in STOPPED:
            continue
        if kind == "referral.reversed" and e.get("reason_code") == "early_exit":
            continue
        found[str(e.get("referee"))].add(kind.removeprefix("referral."))
    return found


def fraud_outcomes(truth: Truth, outcomes: Mapping[str, set[str]]) -> dict[str, dict[str, int]]:
    """Per planted pattern (rings by their length): referees, and those rejected, held or
    reversed, and stopped in any of these ways."""
    table: dict[str, Counter[str]] = {}
    for case in truth.fraud:
        label = f"ring_of_{case.length}" if case.pattern == "ring" and case.length else case.pattern
        row = table.setdefault(label, Counter(dict.fromkeys(("referees", *STOPPED, "stopped"), 0)))
        for referee in case.referees:
            row["referees"] += 1
            found = outcomes.get(referee, set())
            for kind in found:
                row[kind] += 1
            row["stopped"] += bool(found)
    return {label: dict(row) for label, row in table.items()}


def genuine_outcomes(truth: Truth, outcomes: Mapping[str, set[str]]) -> dict[str, Any]:
    """The genuine referrals (the conversions) that a fraud guard held or rejected: each is a
    customer the bank wanted, and an introducer not rewarded."""
    genuine = [g.referee for g in truth.genuine_referrals]
    held = sum(1 for r in genuine if "held" in outcomes.get(r, set()))
    rejected = sum(1 for r in genuine if "rejected" in outcomes.get(r, set()))
    either = sum(1 for r in genuine if outcomes.get(r, set()) & {"held", "rejected"})
    return {
        "genuine_referrals": len(genuine),
        "genuine_referrals_held": held,
        "genuine_referrals_rejected": rejected,
        "genuine_referrals_held_or_rejected": either,
        "genuine_referrals_held_or_rejected_share": _ratio(either, len(genuine)),
    }


def lead_figures(
    truth: Truth,
    events: Sequence[Mapping[str, Any]],
    key_of: Callable[[str, str], str] | None,
) -> dict[str, Any]:
    """Leads detected from `evaluate_from` on, per 1,000 customers per month; and, matched to
    the conversions by the keyed hash, how well the score ranks the RM list. Each week from
    `evaluate_from` the list is what an RM would see that day: every live lead whose
    counterparty has not opened an account yet, ranked by its last published score (a missing
    score counts as 0; ties by lead id). A listed lead *converted* when its counterparty opened
    an account within `LEAD_HORIZON` after the list; the share converted among the top tenth
    of each list (rounded up) and among all listed leads, summed over the lists, and the lift
    (their ratio). Lists start no later than `LEAD_HORIZON` before the end, so every one is
    followed for as long."""
    detected: set[str] = set()
    history: dict[str, list[tuple[datetime, str, float, str]]] = defaultdict(list)
    seen: set[str] = set()
    for e in events:
        kind = str(e.get("type"))
        if not kind.startswith("lead.") or str(e.get("event_id")) in seen:
            continue
        seen.add(str(e.get("event_id")))
        lead_id = str(e.get("lead_id") or e.get("event_id") or e.get("counterparty_key"))
        history[lead_id].append(
            (_at(e), kind, float(e.get("score") or 0), str(e.get("counterparty_key")))
        )
        if kind == "lead.detected" and _at(e) >= truth.evaluate_from:
            detected.add(lead_id)
    months = (truth.end - truth.evaluate_from).total_seconds() / 86400 / DAYS_PER_MONTH
    customers = len(truth.customers)
    figures: dict[str, Any] = {
        "leads_detected_from_evaluate_from": len(detected),
        "leads_per_1000_customers_per_month": round(len(detected) * 1000 / customers / months, 2)
        if customers and months > 0
        else None,
    }
    if key_of is None:
        return figures
    opened: dict[str, list[datetime]] = defaultdict(list)
    for c in truth.conversions:
        opened[key_of(c.counterparty.bank_code, c.counterparty.account)].append(c.opened_at)
    for changes in history.values():
        changes.sort(key=lambda change: change[0])
    lists = listed = listed_converted = top = top_converted = 0
    converted: set[str] = set()
    day = truth.evaluate_from
    while day + LEAD_HORIZON <= truth.end:
        ranked: list[tuple[float, str, bool]] = []
        for lead_id, changes in history.items():
            known = [change for change in changes if change[0] <= day]
            if not known or known[-1][1] == "lead.expired":
                continue
            key = known[-1][3]
            if any(when <= day for when in opened.get(key, [])):
                continue
            won = any(day < when <= day + LEAD_HORIZON for when in opened.get(key, []))
            ranked.append((-known[-1][2], lead_id, won))
            if won:
                converted.add(lead_id)
        ranked.sort()
        head = ranked[: math.ceil(len(ranked) * TOP_LEADS)]
        lists += 1
        listed += len(ranked)
        listed_converted += sum(won for _, _, won in ranked)
        top += len(head)
        top_converted += sum(won for _, _, won in head)
        day += LEAD_LIST_EVERY
    share_top = _ratio(top_converted, top)
    share_all = _ratio(listed_converted, listed)
    figures |= {
        "lead_lists": lists,
        "leads_listed": listed,
        "leads_converted": len(converted),
        "listed_leads_converted": listed_converted,
        "top_leads": top,
        "top_leads_converted": top_converted,
        "lead_conversion_top_10_percent": share_top,
        "lead_conversion_all": share_all,
        "lead_lift_top_10_percent": round(top_converted * listed / top / listed_converted, 2)
        if top and listed_converted
        else None,
    }
    return figures


def rewards_section(
    entries: Sequence[Mapping[str, Any]],
    referral_events: Sequence[Mapping[str, Any]],
    stage_events: Sequence[Mapping[str, Any]],
    milestones: Sequence[Mapping[str, Any]],
) -> Section:
    """The ledger against the events that should have moved it: one welcome credit per
    qualified referral, a referral credit per referrer unless a cap withheld it, reversals for
    reversed referrals, a maturity reward per customer that reached maturity, an anniversary
    reward per anniversary; each entry once, and traceable to an event that was published."""
    if not entries:
        return _not_running(REWARDS_LEDGER.name)
    ids = Counter(str(e.get("entry_id")) for e in entries)
    unique = list({str(e.get("entry_id")): e for e in entries}.values())

    def count(rule: str, kind: str = "credit") -> int:
        return sum(1 for e in unique if e.get("rule") == rule and e.get("kind") == kind)

    def referrals(kind: str) -> set[str]:
        return {str(e.get("referral_id")) for e in referral_events if e.get("type") == kind}

    qualified = referrals("referral.qualified")
    matured = {
        str(e.get("customer_id"))
        for e in stage_events
        if e.get("type") == "stage.changed" and e.get("stage") == "maturity"
    }
    sources = {str(e.get("event_id")) for e in (*referral_events, *stage_events, *milestones)}
    points: Counter[str] = Counter()
    last_entry: dict[str, Mapping[str, Any]] = {}
    for e in unique:
        points[str(e.get("rule"))] += int(e.get("points", 0))
        last_entry[str(e.get("customer_id"))] = e
    return Section(
        running=True,
        figures={
            "ledger_entries": len(unique),
            "entries_published_twice": sum(1 for n in ids.values() if n > 1),
            "qualified_referrals": len(qualified),
            "welcome_credits (one per qualified referral)": count("referral.referee"),
            "referrer_credits (the rest withheld by caps)": count("referral.referrer"),
            "reversed_referrals": len(referrals("referral.reversed")),
            "reversal_entries": sum(1 for e in unique if e.get("kind") == "reversal"),
            "customers_that_reached_maturity": len(matured),
            "maturity_rewards": count("loyalty.maturity"),
            "tenure_anniversaries": sum(
                1 for m in milestones if m.get("type") == "tenure.anniversary"
            ),
            "anniversary_rewards": count("loyalty.anniversary"),
            "entries_without_a_published_source_event": sum(
                1 for e in unique if str(e.get("source_event_id")) not in sources
            ),
            "points_by_rule": dict(sorted(points.items())),
            "accounts_flagged_for_review": sum(1 for e in last_entry.values() if e.get("flagged")),
        },
    )


NOTIFY_POLICY_RULES = (
    "scheduled_in_quiet_hours",
    "over_daily_cap",
    "same_message_within_24_hours",
    "automated_retention_message_to_hnw",
)


def notify_section(
    notifications: Sequence[Mapping[str, Any]],
    tasks: Sequence[Mapping[str, Any]],
    stage_events: Sequence[Mapping[str, Any]],
    quiet_hours: tuple[int, int] = (21, 8),
    daily_cap: int = 3,
    service_daily_cap: int = 5,
) -> Section:
    """What notify sent and tasked, and every breach of its policy found in its own outputs:
    a message scheduled in quiet hours, over a daily cap, twice within 24 hours, or automated
    to a high-net-worth customer at risk. There should be none."""
    if not notifications and not tasks:
        return _not_running(f"{NOTIFICATIONS.name} or {RM_TASKS.name}")
    scheduled = list(
        {
            str(n["notification_id"]): n
            for n in notifications
            if n.get("type") == "notification.scheduled"
        }.values()
    )
    start, end = quiet_hours
    violations: Counter[str] = Counter(dict.fromkeys(NOTIFY_POLICY_RULES, 0))
    per_day: Counter[tuple[str, str, bool]] = Counter()
    by_key: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for n in scheduled:
        zone = ZoneInfo(str(n.get("time_zone") or "Asia/Shanghai"))
        local = datetime.fromisoformat(str(n["send_at"])).astimezone(zone)
        if local.hour >= start or local.hour < end:
            violations["scheduled_in_quiet_hours"] += 1
        service = n.get("category") == "service"
        per_day[(str(n["customer_id"]), local.date().isoformat(), service)] += 1
        by_key[(str(n["customer_id"]), str(n["dedupe_key"]))].append(local)
    violations["over_daily_cap"] = sum(
        count - (service_daily_cap if service else daily_cap)
        for (_, _, service), count in per_day.items()
        if count > (service_daily_cap if service else daily_cap)
    )
    violations["same_message_within_24_hours"] = sum(
        1
        for times in by_key.values()
        for a, b in zip(sorted(times), sorted(times)[1:], strict=False)
        if b - a < timedelta(hours=24)
    )
    hnw_at_risk = {
        (str(e["customer_id"]), str(e["occurred_at"]))
        for e in stage_events
        if e.get("type") == "stage.changed"
        and e.get("stage") == "at_risk"
        and e.get("tier") == "hnw"
    }
    violations["automated_retention_message_to_hnw"] = sum(
        1
        for n in scheduled
        if n.get("category") == "retention"
        and (str(n["customer_id"]), str(n["occurred_at"])) in hnw_at_risk
    )
    task_states = {str(t["task_id"]): t for t in tasks}
    return Section(
        running=True,
        figures={
            "notifications_scheduled": len(scheduled),
            "deferred_by_quiet_hours": sum(1 for n in scheduled if n.get("deferred")),
            "suppressed_by_reason": dict(
                sorted(
                    Counter(
                        str(n.get("reason_code"))
                        for n in notifications
                        if n.get("type") == "notification.suppressed"
                    ).items()
                )
            ),
            "cancelled": sum(1 for n in notifications if n.get("type") == "notification.cancelled"),
            "by_template": dict(sorted(Counter(str(n.get("template")) for n in scheduled).items())),
            # Customers' locales (any BCP 47 tag) come out as the template locales written.
            "by_template_locale": dict(
                sorted(Counter(str(n.get("template_locale")) for n in scheduled).items())
            ),
            "rm_tasks": len(task_states),
            "rm_tasks_by_kind_and_priority": dict(
                sorted(
                    Counter(
                        f"{t.get('kind')} {t.get('priority')}" for t in task_states.values()
                    ).items()
                )
            ),
            "policy_violations": sum(violations.values()),
            "policy_violations_by_rule": dict(sorted(violations.items())),
        },
    )


def evaluate(
    truth: Truth,
    outputs: Mapping[str, Sequence[Mapping[str, Any]]],
    dlq: Mapping[str, Mapping[str, int]],
    counterparty_key: Callable[[str, str], str] | None = None,
) -> Evaluation:
    """`outputs`: decoded events per output topic name (missing topics count as empty)."""

    def of(topic: str) -> list[Mapping[str, Any]]:
        return list(outputs.get(topic, []))

    stage_events = of(STAGE_CHANGED.name)
    return Evaluation(
        seed=truth.seed,
        profile=truth.profile,
        customers=len(truth.customers),
        days=truth.days,
        evaluate_from=truth.evaluate_from,
        outputs={topic: len(events) for topic, events in sorted(outputs.items())},
        churn=churn_detection(truth, stage_events) if stage_events else None,
        feeds=feed_shapes(truth, of(CHURN_SIGNALS.name)) if of(CHURN_SIGNALS.name) else None,
        stages=stage_series(truth, stage_events) if stage_events else None,
        referral=referral_section(truth, of(REFERRAL_EVENTS.name), counterparty_key),
        rewards=rewards_section(
            of(REWARDS_LEDGER.name), of(REFERRAL_EVENTS.name), stage_events, of(MILESTONES.name)
        ),
        notify=notify_section(of(NOTIFICATIONS.name), of(RM_TASKS.name), stage_events),
        dead_letters=dead_letters(truth, dlq, {topic: of(topic) for topic in OUTPUT_DLQS}),
    )
