"""The held-out evaluation: each figure per run, its mean and its worst run, on hand-made
evaluations whose answers are known; and the runs themselves, in worker processes and from the
command line, on tiny populations."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from schemas.topics import REFERRAL_EVENTS, STAGE_CHANGED
from services.cli.main import main
from services.simulator.evaluate import Evaluation, evaluate
from services.simulator.heldout import (
    FIGURES,
    HELD_OUT_SEEDS,
    TUNING_SEEDS,
    Figure,
    FigureDef,
    HeldOut,
    RunResult,
    RunSpec,
    aggregate,
    figure,
    run_all,
    shown,
    specs,
)
from services.simulator.report import held_out_markdown, write_held_out
from services.simulator.truth import CustomerTruth, Truth
from tests.unit.simulated import churner, day, stage, truth_of


def truth(seed: int) -> Truth:
    return truth_of(
        {
            "S1": CustomerTruth(persona="salaried", stable=True),
            "S2": CustomerTruth(persona="stable_saver", stable=True),
            "X": churner("competitor_attraction", 100, 150),
            "Y": churner("financial_distress", 100, 160),
        },
        seed,
    )


def result(seed: int, profile: str, evaluation: Evaluation) -> RunResult:
    return RunResult(
        seed=seed,
        profile=profile,
        customers=4,
        days=365,
        events=100,
        seconds=1.0,
        evaluation=evaluation,
    )


@pytest.fixture
def results() -> list[RunResult]:
    """Three runs: both churners caught and no false alarm; one caught and a false alarm on a
    stable customer; and a run where the lifecycle produced nothing."""
    good = evaluate(
        truth(4),
        {
            STAGE_CHANGED.name: [
                stage("X", 120, "at_risk", "competitor_attraction"),
                stage("Y", 130, "at_risk", "financial_distress"),
            ],
            REFERRAL_EVENTS.name: [
                {"type": "lead.detected", "lead_id": "L", "occurred_at": day(40).isoformat()}
            ],
        },
        {},
    )
    worse = evaluate(
        truth(5),
        {
            STAGE_CHANGED.name: [
                stage("X", 120, "at_risk", "competitor_attraction"),
                stage("S1", 200, "at_risk", "disengagement"),
            ]
        },
        {},
    )
    silent = evaluate(truth(6), {}, {})
    return [
        result(4, "standard", good),
        result(5, "standard", worse),
        result(6, "varied", silent),
    ]


def by_name(held: HeldOut, name: str) -> Figure:
    return next(f for f in held.figures if f.name == name)


def test_each_figure_per_run_with_its_mean_and_worst(results: list[RunResult]) -> None:
    held = aggregate(results, seconds=12.34)
    assert [r.label for r in held.runs] == ["standard 4", "standard 5", "varied 6"]
    assert held.seeds == [4, 5, 6] and held.profiles == ["standard", "varied"]
    assert held.tuning_seeds == list(TUNING_SEEDS) and held.seconds == 12.3
    recall = by_name(held, "churners detected (recall)")
    # Higher is better: the worst run is the lowest; a run without outputs counts in neither.
    assert recall.values == [1.0, 0.5, None]
    assert (recall.mean, recall.worst) == (0.75, 0.5)
    alarms = by_name(held, "false alarms per 1,000 stable customers")
    # Lower is better: the worst run is the highest.
    assert alarms.values == [0.0, 500.0, None]
    assert (alarms.mean, alarms.worst) == (250.0, 500.0)
    transacting = by_name(held, "customers who keep transacting flagged at risk, per year")
    assert transacting.values == [0.0, round(0.5 / (335 / 365), 4), None]
    # A volume has no better direction and no worst.
    leads = by_name(held, "leads per 1,000 customers per month")
    assert leads.better is None and leads.worst is None
    assert leads.values[0] is not None and leads.values[1:] == [None, None]
    assert {f.name for f in held.figures} == {d.name for d in FIGURES}


def test_figure_of_hand_made_values() -> None:
    evaluations = [
        Evaluation.model_construct(seed=seed) for seed in (1, 2, 3)
    ]  # only the seed is read below
    values = {1: 0.5, 2: None, 3: 0.8}

    def definition(better: str | None) -> FigureDef:
        return FigureDef("f", "share", better, lambda e: values[e.seed])  # type: ignore[arg-type]

    higher = figure(definition("higher"), evaluations)
    assert (higher.values, higher.mean, higher.worst) == ([0.5, None, 0.8], 0.65, 0.5)
    assert figure(definition("lower"), evaluations).worst == 0.8
    assert figure(definition(None), evaluations).worst is None
    nothing = figure(FigureDef("g", "days", "higher", lambda e: None), evaluations)
    assert (nothing.mean, nothing.worst) == (None, None)
    assert [shown(v, u) for v, u in ((0.1234, "share"), (3.25, "days"), (7.0, "count"))] == [
        "12.3 %",
        "3.2 d",
        "7",
    ]
    assert shown(None, "rate") == "n/a"


def test_report_gives_every_run_the_mean_and_the_worst(
    results: list[RunResult], tmp_path: Path
) -> None:
    held = aggregate(results)
    text = held_out_markdown(held)
    assert "seeds 1, 2, 3 only" in text and "seeds 4, 5, 6" in text
    assert "| figure | better | standard 4 | standard 5 | varied 6 | mean | worst |" in text
    assert "| churners detected (recall) | ↑ | 100.0 % | 50.0 % | n/a | 75.0 % | 50.0 % |" in text
    assert (
        "| false alarms per 1,000 stable customers | ↓ | 0.00 | 500.00 | n/a | 250.00 | 500.00 |"
        in text
    )
    path = write_held_out(held, results, tmp_path)
    assert path.read_text() == text
    assert orjson.loads((tmp_path / "report.json").read_bytes())["seeds"] == [4, 5, 6]
    assert (tmp_path / "runs" / "standard-4" / "report.md").exists()


def test_runs_in_worker_processes_come_back_in_order() -> None:
    """Spawned workers simulate, replay and score each run; the results keep the runs' order
    and equal what one process gives."""
    runs = [RunSpec(seed, "varied", customers=12, days=40) for seed in (2, 1)]
    parallel = run_all(runs, workers=2)
    assert [(r.seed, r.profile) for r in parallel] == [(2, "varied"), (1, "varied")]
    single = run_all(runs[:1], workers=1)
    assert single[0].evaluation == parallel[0].evaluation
    assert parallel[0].evaluation.profile == "varied" and parallel[0].events > 0
    assert specs() == [
        RunSpec(seed, profile) for profile in ("standard", "varied") for seed in HELD_OUT_SEEDS
    ]


def test_rapport_evaluate_replay_writes_the_held_out_report(tmp_path: Path) -> None:
    args = ["evaluate", "--replay", "--seeds", "3", "--profiles", "standard"]
    args += ["--customers", "12", "--days", "40", "--workers", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    assert "standard 3" in (tmp_path / "report.md").read_text()
    with pytest.raises(SystemExit) as refused:  # argparse: the usage and what was wrong
        main([*args[:-2], "--profiles", "calm", "--out", str(tmp_path)])
    assert refused.value.code == 2
    with pytest.raises(SystemExit) as refused:
        main([*args[:2], "--seeds", "4,five"])
    assert refused.value.code == 2
