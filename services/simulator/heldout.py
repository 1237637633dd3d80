"""The held-out evaluation: the rules scored on populations they were not tuned on.

Rule parameters are chosen on seeds 1 to 3 (`TUNING_SEEDS`) of either profile; the figures the
report and the docs give come from seeds 4 and 5 (`HELD_OUT_SEEDS`) of both profiles, each fed
through the lifecycle and referral rules in-process (`replay.py`) and scored against its truth.
For every headline figure the report gives the value of each run, the mean, and the worst run
(the lowest of a figure where higher is better, the highest where lower is better): a rule
tuned to one population shows up in the worst column.

The runs are independent and CPU-bound, so they go to worker processes (two by default).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from services.simulator.evaluate import CAUSES, ChurnDetection, Evaluation, FeedShapes

TUNING_SEEDS = (1, 2, 3)
HELD_OUT_SEEDS = (4, 5)
PROFILES = ("standard", "varied")
# Four runs of this many customers over a year take about four minutes on two cores (each run
# about 2 minutes: replay goes at about 750 events a second).
DEFAULT_CUSTOMERS = 400
DEFAULT_DAYS = 365
DEFAULT_WORKERS = 2
# The planted fraud per pattern, rings by length (`evaluate.fraud_outcomes`).
FRAUD_LABELS = (
    "self_referral",
    "ring_of_2",
    "ring_of_3",
    "ring_of_4",
    "velocity",
    "funded_by_referrer",
    "funded_through_hop",
)

Better = Literal["higher", "lower"] | None
Unit = Literal["share", "days", "count", "rate"]


@dataclass(frozen=True)
class RunSpec:
    """One population to simulate, replay and score."""

    seed: int
    profile: str
    customers: int = DEFAULT_CUSTOMERS
    days: int = DEFAULT_DAYS

    @property
    def label(self) -> str:
        return f"{self.profile} {self.seed}"


class RunResult(BaseModel):
    seed: int
    profile: str
    customers: int
    days: int
    events: int
    seconds: float
    evaluation: Evaluation

    @property
    def label(self) -> str:
        return f"{self.profile} {self.seed}"


def run_one(spec: RunSpec) -> str:
    """Simulate, replay and evaluate one population; the result as JSON (it crosses a process
    boundary)."""
    from services.referral.config import ReferralSettings
    from services.runtime.pseudonym import counterparty_key
    from services.simulator.evaluate import evaluate
    from services.simulator.replay import replay
    from services.simulator.simulate import simulate

    started = time.monotonic()
    simulation = simulate(spec.customers, spec.days, spec.seed, profile=spec.profile)
    outputs = replay(simulation)
    secret = ReferralSettings().pseudonym_key.encode()
    evaluation = evaluate(
        simulation.truth,
        outputs,
        {},
        lambda bank, account: counterparty_key(bank, account, secret),
    )
    return RunResult(
        seed=spec.seed,
        profile=spec.profile,
        customers=spec.customers,
        days=spec.days,
        events=simulation.valid,
        seconds=round(time.monotonic() - started, 1),
        evaluation=evaluation,
    ).model_dump_json()


def specs(
    seeds: Iterable[int] = HELD_OUT_SEEDS,
    profiles: Iterable[str] = PROFILES,
    customers: int = DEFAULT_CUSTOMERS,
    days: int = DEFAULT_DAYS,
) -> list[RunSpec]:
    """Every (seed, profile) pair, profile by profile."""
    seeds = list(seeds)
    return [RunSpec(seed, profile, customers, days) for profile in profiles for seed in seeds]


def run_all(
    runs: Sequence[RunSpec],
    workers: int = DEFAULT_WORKERS,
    on_done: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Every run, `workers` at a time in separate processes (one: in this process); results in
    the order of `runs`. `on_done` hears of each as it finishes."""
    results: dict[RunSpec, RunResult] = {}

    def done(spec: RunSpec, found: str) -> None:
        results[spec] = RunResult.model_validate_json(found)
        if on_done is not None:
            on_done(results[spec])

    if workers <= 1 or len(runs) <= 1:
        for spec in runs:
            done(spec, run_one(spec))
    else:
        # Spawned, not forked: the parent may hold threads (a progress display, a client).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(run_one, spec): spec for spec in runs}
            for future in as_completed(futures):
                done(futures[future], future.result())
    return [results[spec] for spec in runs]


# --- the figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureDef:
    """A headline figure: how to read it off an evaluation, its unit, and which way is better
    (None: a volume, neither better high nor low)."""

    name: str
    unit: Unit
    better: Better
    value: Callable[[Evaluation], float | None]


def _churn(
    read: Callable[[ChurnDetection], float | None],
) -> Callable[[Evaluation], float | None]:
    return lambda e: read(e.churn) if e.churn is not None else None


def _feeds(read: Callable[[FeedShapes], float | None]) -> Callable[[Evaluation], float | None]:
    return lambda e: read(e.feeds) if e.feeds is not None else None


def _referral(name: str) -> Callable[[Evaluation], float | None]:
    def read(e: Evaluation) -> float | None:
        value = e.referral.figures.get(name) if e.referral.running else None
        return float(value) if isinstance(value, int | float) else None

    return read


def _fraud_stopped(label: str) -> Callable[[Evaluation], float | None]:
    def read(e: Evaluation) -> float | None:
        row = (
            e.referral.figures.get("fraud_outcomes", {}).get(label) if e.referral.running else None
        )
        if not row or not row.get("referees"):
            return None
        return round(int(row["stopped"]) / int(row["referees"]), 4)

    return read


def _precision(cause: str) -> Callable[[Evaluation], float | None]:
    return _churn(lambda c: c.by_cause[cause].precision)


FIGURES: tuple[FigureDef, ...] = (
    FigureDef("churners detected (recall)", "share", "higher", _churn(lambda c: c.recall)),
    FigureDef(
        "at-risk flags followed by a churn (precision)",
        "share",
        "higher",
        _churn(lambda c: c.precision),
    ),
    *(FigureDef(f"precision, {cause}", "share", "higher", _precision(cause)) for cause in CAUSES),
    FigureDef("probable cause right", "share", "higher", _churn(lambda c: c.cause_accuracy)),
    FigureDef(
        "lead time, median",
        "days",
        "higher",
        _churn(lambda c: c.lead_time_days_median),
    ),
    FigureDef(
        "lead time, 10th percentile",
        "days",
        "higher",
        _churn(lambda c: c.lead_time_days_p10),
    ),
    FigureDef(
        "false alarms per 1,000 stable customers",
        "rate",
        "lower",
        _churn(lambda c: c.false_alarms_per_1000_stable),
    ),
    FigureDef(
        "customers who keep transacting flagged at risk, per year",
        "share",
        "lower",
        _churn(lambda c: c.transacting_flagged_share_per_year),
    ),
    FigureDef(
        "silent customers with postings found inactive",
        "share",
        "higher",
        _feeds(lambda f: f.quiet_recall),
    ),
    FigureDef(
        "competitor alarms on customers who only paid bills elsewhere",
        "count",
        "lower",
        _feeds(lambda f: f.competitor_alarms_without_money_moved),
    ),
    FigureDef(
        "bill movers with payments_moved 14+ days before closing",
        "share",
        "higher",
        _feeds(lambda f: f.bill_movers_recall),
    ),
    FigureDef(
        "payments_moved on customers who moved no payments",
        "count",
        "lower",
        _feeds(lambda f: f.payments_moved_false_alarms),
    ),
    FigureDef(
        "conversions attributed to the true introducer",
        "share",
        "higher",
        _referral("attribution_accuracy"),
    ),
    FigureDef(
        "converted counterparties found as leads first", "share", "higher", _referral("lead_recall")
    ),
    FigureDef(
        "attributions with no true referrer",
        "count",
        "lower",
        _referral("attributions_without_a_true_referrer"),
    ),
    FigureDef(
        "leads per 1,000 customers per month",
        "rate",
        None,
        _referral("leads_per_1000_customers_per_month"),
    ),
    FigureDef(
        "leads converted, top 10 % by score",
        "share",
        "higher",
        _referral("lead_conversion_top_10_percent"),
    ),
    FigureDef("leads converted, all leads", "share", None, _referral("lead_conversion_all")),
    FigureDef(
        "lift of the top 10 % of leads", "rate", "higher", _referral("lead_lift_top_10_percent")
    ),
    *(
        FigureDef(f"planted fraud stopped, {label}", "share", "higher", _fraud_stopped(label))
        for label in FRAUD_LABELS
    ),
    FigureDef(
        "genuine referrals held or rejected",
        "share",
        "lower",
        _referral("genuine_referrals_held_or_rejected_share"),
    ),
)


class Figure(BaseModel):
    """One headline figure over the runs: each run's value, the mean and the worst."""

    name: str
    unit: Unit
    better: Better
    values: list[float | None]
    mean: float | None
    worst: float | None


class RunSummary(BaseModel):
    label: str
    seed: int
    profile: str
    customers: int
    events: int
    seconds: float


class HeldOut(BaseModel):
    """The held-out evaluation: its runs and every headline figure across them."""

    tuning_seeds: list[int]
    seeds: list[int]
    profiles: list[str]
    customers: int
    days: int
    runs: list[RunSummary]
    figures: list[Figure]
    seconds: float = 0.0


def figure(definition: FigureDef, evaluations: Sequence[Evaluation]) -> Figure:
    """A figure's values over the runs, their mean, and the worst of them (runs without a
    value, say a service that produced nothing, are left out of both)."""
    values = [definition.value(e) for e in evaluations]
    values = [None if v is None else round(float(v), 4) for v in values]
    known = [v for v in values if v is not None]
    worst = None
    if known and definition.better == "higher":
        worst = min(known)
    elif known and definition.better == "lower":
        worst = max(known)
    return Figure(
        name=definition.name,
        unit=definition.unit,
        better=definition.better,
        values=values,
        mean=round(statistics.fmean(known), 4) if known else None,
        worst=worst,
    )


def aggregate(
    results: Sequence[RunResult],
    seconds: float = 0.0,
    definitions: Sequence[FigureDef] = FIGURES,
) -> HeldOut:
    """Every headline figure over the runs."""
    evaluations = [r.evaluation for r in results]
    return HeldOut(
        tuning_seeds=list(TUNING_SEEDS),
        seeds=sorted({r.seed for r in results}),
        profiles=list(dict.fromkeys(r.profile for r in results)),
        customers=max((r.customers for r in results), default=0),
        days=max((r.days for r in results), default=0),
        runs=[
            RunSummary(
                label=r.label,
                seed=r.seed,
                profile=r.profile,
                customers=r.evaluation.customers,
                events=r.events,
                seconds=r.seconds,
            )
            for r in results
        ],
        figures=[figure(d, evaluations) for d in definitions],
        seconds=round(seconds, 1),
    )


def shown(value: float | None, unit: Unit) -> str:
    """A figure's value as the report prints it."""
    if value is None:
        return "n/a"
    if unit == "share":
        return f"{value * 100:.1f} %"
    if unit == "days":
        return f"{value:.1f} d"
    if unit == "count":
        return f"{value:g}"
    return f"{value:.2f}"
