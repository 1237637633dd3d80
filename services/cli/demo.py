"""`rapport simulate`, `evaluate` and `demo`: a simulated population fed to the stack, and
what the services concluded scored against the simulator's truth."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from services.cli import supervisor
from services.cli.common import console, external_cluster, local_kafka
from services.cli.ops import cmd_down, counts_table, start_stack
from services.runtime.observe import WorkerCounts
from services.runtime.settings import RuntimeSettings

if TYPE_CHECKING:
    from services.simulator.simulate import Simulation
    from services.simulator.truth import Truth


def _simulate(args: argparse.Namespace) -> Simulation:
    """The population the arguments ask for, with a line saying what it holds."""
    from services.simulator.simulate import simulate

    started = time.monotonic()
    profile = getattr(args, "profile", "standard")
    simulation = simulate(customers=args.customers, days=args.days, seed=args.seed, profile=profile)
    truth = simulation.truth
    console.print(
        f"simulated {len(truth.customers)} customers ({profile} profile) over {args.days} days in "
        f"{time.monotonic() - started:.1f} s: {simulation.valid} valid events "
        f"({truth.noise.duplicates} duplicates, {truth.noise.late} late) and "
        f"{simulation.invalid} invalid ones"
    )
    return simulation


def feed(
    settings: RuntimeSettings, simulation: Simulation, truth_path: Path, rate: float | None
) -> None:
    """Into the input topic: note where the evaluated topics end (the outputs of this feed come
    after), register the simulated referral codes, write the truth, then produce the events."""
    from services.runtime.produce import produce_records, records_from_lines

    truth = simulation.truth
    truth.output_offsets = asyncio.run(output_offsets(settings))
    register_codes(settings, truth)
    write_truth(truth, truth_path)
    asyncio.run(
        produce_records(
            settings, records_from_lines(simulation.lines), rate=rate, total=len(simulation.lines)
        )
    )


def write_truth(truth: Truth, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    truth.write(path)
    console.print(f"truth: {path}")


def cmd_simulate(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport simulate: a population with the truth behind it, to a file or the input topic."""
    simulation = _simulate(args)
    truth_path = Path(args.truth) if args.truth else default_truth_path(args, settings)
    if args.out:
        Path(args.out).write_bytes(b"\n".join(simulation.lines) + b"\n")
        console.print(f"events: {args.out}")
        write_truth(simulation.truth, truth_path)
    else:
        feed(settings, simulation, truth_path, args.rate)
    return 0


def register_codes(settings: RuntimeSettings, truth: Truth) -> None:
    """The simulated customers' referral codes, issued the day before the simulated period, so
    the referral service knows them when the feed gives them at account opening."""
    from datetime import timedelta

    from services.referral import read_model
    from services.referral.config import ReferralSettings
    from services.runtime import db

    url = settings.resolved_database_url
    db.upgrade(url)
    validity = timedelta(days=ReferralSettings().code_validity_days)
    read_model.register_codes(url, truth.codes, truth.start - timedelta(days=1), validity)
    console.print(f"referral codes: {len(truth.codes)} registered")


def default_truth_path(args: argparse.Namespace, settings: RuntimeSettings) -> Path:
    """Next to the events file, or in the home directory when the feed went to the broker."""
    if args.out:
        return Path(args.out).with_suffix(".truth.json")
    return settings.home / "simulation" / "truth.json"


async def output_offsets(settings: RuntimeSettings) -> dict[str, dict[int, int]]:
    """Where each topic the evaluator reads ends now: a feed's outputs come after."""
    from services.runtime.readback import topic_ends
    from services.simulator.evaluate import EVALUATED_TOPICS

    return await topic_ends(settings.bootstrap_list, list(EVALUATED_TOPICS))


def cmd_evaluate(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport evaluate: score the services' outputs against a simulation's truth, or, with
    --replay, the held-out evaluation (simulated populations through the rules in-process)."""
    if args.replay:
        seeds, profiles = args.seeds, args.profiles
        out = Path(args.out) if args.out else settings.home / "report" / "held-out"
        held_out_evaluation(seeds, profiles, args.customers, args.days, args.workers, out)
        return 0
    truth = Path(args.truth) if args.truth else settings.home / "simulation" / "truth.json"
    report = evaluate_outputs(settings, truth, Path(args.out) if args.out else None)
    console.print(f"report: {report}")
    return 0


def held_out_evaluation(
    seeds: list[int], profiles: list[str], customers: int, days: int, workers: int, out: Path
) -> Path:
    """Simulate, replay and score every (seed, profile) on worker processes, print every
    headline figure per run with the mean and the worst, and write the report."""
    from services.simulator.heldout import TUNING_SEEDS, RunResult, aggregate, run_all, shown, specs
    from services.simulator.report import write_held_out

    if tuned := sorted(set(seeds) & set(TUNING_SEEDS)):
        console.print(
            f"[yellow]seeds {tuned} are the ones rule parameters are tuned on: "
            "their figures are not held out[/yellow]"
        )
    runs = specs(seeds, profiles, customers, days)
    console.print(
        f"held-out evaluation: {len(runs)} runs (seeds {', '.join(map(str, seeds))} x "
        f"profiles {', '.join(profiles)}), {customers:,} customers over {days} days each, "
        f"{workers} at a time"
    )
    started = time.monotonic()

    def done(result: RunResult) -> None:
        console.print(
            f"  {result.label}: {result.events:,} events simulated, replayed and scored in "
            f"{result.seconds:.0f} s"
        )

    results = run_all(runs, workers, done)
    held = aggregate(results, time.monotonic() - started)
    arrows = {"higher": "↑", "lower": "↓", None: ""}
    table = Table(
        title=f"held-out evaluation: seeds {', '.join(map(str, held.seeds))} "
        f"(rules tuned on {', '.join(map(str, held.tuning_seeds))}), {held.seconds:.0f} s"
    )
    table.add_column("figure")
    table.add_column("")
    for run in held.runs:
        table.add_column(run.label, justify="right")
    table.add_column("mean", justify="right")
    table.add_column("worst", justify="right")
    for f in held.figures:
        table.add_row(
            f.name,
            arrows[f.better],
            *(shown(v, f.unit) for v in f.values),
            shown(f.mean, f.unit),
            shown(f.worst, f.unit) if f.better else "",
        )
    console.print(table)
    report = write_held_out(held, results, out)
    console.print(f"held-out report: {report} (each run's report under {out / 'runs'})")
    return report


def evaluate_outputs(settings: RuntimeSettings, truth_path: Path, out: Path | None) -> Path:
    """Read the output topics, score them, print the headline; returns the report's path."""
    from services.referral.config import ReferralSettings
    from services.runtime.pseudonym import counterparty_key
    from services.runtime.readback import read_topics
    from services.simulator.evaluate import EVALUATED_TOPICS, decode_outputs, evaluate
    from services.simulator.report import headline, write
    from services.simulator.truth import Truth

    truth = Truth.read(truth_path)
    records = asyncio.run(read_topics(settings.bootstrap_list, list(EVALUATED_TOPICS)))
    outputs, dead_letters = decode_outputs(records, truth.output_offsets)
    secret = ReferralSettings().pseudonym_key.encode()
    evaluation = evaluate(
        truth, outputs, dead_letters, lambda bank, account: counterparty_key(bank, account, secret)
    )
    table = Table(title="evaluation against the simulator's truth")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in headline(evaluation):
        table.add_row(label, value)
    console.print(table)
    return write(evaluation, out or settings.home / "report")


def _workbench_links(settings: RuntimeSettings) -> None:
    """The workbench's address, and sign-in links for the development RM and team lead."""
    from services.runtime.auth import API_KEYS, Principal, Role
    from services.workbench.session import sign_in_link

    base = f"http://{settings.api_host}:{settings.api_port('workbench')}"
    console.rule("Workbench")
    console.print(f"workbench: {base}  (stop everything with `rapport down`)")
    key_file = supervisor.workbench_key_file(settings)
    try:
        grants = API_KEYS.validate_json(supervisor.development_keys_file(settings).read_bytes())
        session_key = key_file.read_bytes().strip()
    except (OSError, ValueError):
        return  # authentication configured by the bank: sign in with its tokens
    for role, who in ((Role.RM, "relationship manager"), (Role.OPS, "team lead")):
        for credential, grant in grants.items():
            if grant.roles == [role]:
                principal = Principal(grant.subject, frozenset(grant.roles), grant.rm_id)
                link = sign_in_link(base, session_key, principal, credential)
                console.print(f"{who} {grant.rm_id or grant.subject}: {link}", soft_wrap=True)


def _ops_headers(settings: RuntimeSettings) -> dict[str, str]:
    """The ops role's development key, when `rapport up` made the keys."""
    from services.runtime.auth import Role, key_for

    key = key_for(supervisor.development_keys_file(settings), Role.OPS)
    return {"X-API-Key": key} if key else {}


def _stage_tier_table(settings: RuntimeSettings, timeout: float = 20.0) -> None:
    """Customers by stage and tier, asked of the lifecycle API as a user would."""
    import httpx

    url = f"http://{settings.api_host}:{settings.api_port('lifecycle')}/lifecycle/summary"
    headers = _ops_headers(settings)
    deadline = time.monotonic() + timeout
    summary: dict[str, dict[str, dict[str, int]]] = {}
    # The read model trails the stream by about a second: wait until two answers agree.
    while time.monotonic() < deadline:
        try:
            latest = httpx.get(url, headers=headers, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            latest = {}
        if latest and latest == summary:
            break
        summary = latest
        time.sleep(1.5)
    matrix = summary.get("by_stage_and_tier", {})
    if not matrix:
        console.print(f"[yellow]no answer from {url}[/yellow]")
        return
    tiers = ["mass", "affluent", "hnw"]
    table = Table("stage", *tiers, "all", title=f"customers by stage and tier ({url})")
    for stage, row in matrix.items():
        table.add_row(stage, *(str(row.get(t, 0)) for t in tiers), str(sum(row.values())))
    console.print(table)


def _rewards_table(settings: RuntimeSettings, timeout: float = 60.0) -> None:
    """The ledger by rule, asked of the rewards API once the outbox relay has caught up."""
    import httpx

    url = f"http://{settings.api_host}:{settings.api_port('rewards')}/rewards/summary"
    headers = _ops_headers(settings)
    deadline = time.monotonic() + timeout
    summary: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            summary = httpx.get(url, headers=headers, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            summary = {}
        if summary and summary.get("outbox_backlog") == 0:
            break
        time.sleep(1)
    if not summary:
        console.print(f"[yellow]no answer from {url}[/yellow]")
        return
    table = Table("rule", "kind", "entries", "points", title=f"rewards ledger ({url})")
    for row in summary["by_rule"]:
        table.add_row(row["rule"], row["kind"], str(row["entries"]), str(row["points"]))
    console.print(table)
    console.print(
        f"accounts {summary['accounts']}, flagged for review {summary['accounts_flagged']}, "
        f"withheld by caps {summary['withheld_points_by_reason'] or 'nothing'}, "
        f"entries waiting for the relay {summary['outbox_backlog']}"
    )


def _drain_with_progress(
    settings: RuntimeSettings, expected: dict[str, int], before: dict[str, int], timeout: float
) -> list[WorkerCounts]:
    """Wait for the workers, with a bar per worker: records finished and the rate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from services.runtime.observe import wait_until_drained

    progress = Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>6.0f} events/s"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    tasks = {
        service: progress.add_task(service, total=total - before.get(service, 0), rate=0.0)
        for service, total in expected.items()
    }

    def show(counts: list[WorkerCounts]) -> None:
        elapsed = max(time.monotonic() - started, 1e-9)
        for c in counts:
            if c.service in tasks:
                done = c.total - before.get(c.service, 0)
                progress.update(tasks[c.service], completed=done, rate=done / elapsed)

    with progress:
        return wait_until_drained(settings, expected, timeout=timeout, on_progress=show)


def clean_slate(settings: RuntimeSettings) -> None:
    """The demo starts from nothing, so that its figures depend only on its own feed: stop what
    runs in this home, then remove the local broker's data, the workers' state, the embedded
    database and earlier reports. An external cluster is left alone."""
    import shutil

    if external_cluster(settings):
        console.print(
            "external cluster: earlier data on it stays, and the evaluation reads only this "
            "run's outputs, but the workers' state may hold earlier customers"
        )
        return
    supervisor.stop(settings)
    # Made afresh by `rapport up`: keys of an earlier version may lack what the demo needs.
    supervisor.development_keys_file(settings).unlink(missing_ok=True)
    kafka = local_kafka(settings)
    kafka.stop()
    removed = []
    for path in (
        kafka.directory,
        settings.home / "state",
        settings.home / "simulation",
        settings.home / "report",
    ):
        if path.exists():
            shutil.rmtree(path)
            removed.append(path.name)
    if settings.database_url is None:
        sqlite = settings.home / "rapport.db"
        if sqlite.exists():
            sqlite.unlink()
            removed.append(sqlite.name)
    if removed:
        console.print(f"clean slate: removed {', '.join(removed)} from {settings.home}")


def cmd_demo(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport demo: the whole stack on the local broker with a simulated population, then the
    evaluation of what the services concluded."""
    from services.runtime.observe import wait_until_drained, wait_until_quiet

    console.rule("Rapport demo")
    clean_slate(settings)
    start_stack(settings)
    try:
        simulation = _simulate(args)
        truth_path = settings.home / "simulation" / "truth.json"
        before = {c.service: c.total for c in wait_until_drained(settings, {}, 0)}
        feed(settings, simulation, truth_path, rate=None)
        expected = {
            service: len(simulation.lines) + before.get(service, 0)
            for service in ("lifecycle", "referral", "notify")
        }
        started = time.monotonic()
        counts = _drain_with_progress(settings, expected, before, args.timeout)
        wait_until_quiet(settings)
        console.print(f"workers drained the input in {time.monotonic() - started:.1f} s")
        counts_table(counts)
        _stage_tier_table(settings)
        _rewards_table(settings)
        report = evaluate_outputs(settings, truth_path, None)
        console.print(f"full report: {report} (charts beside it)")
        ok = all(c.total >= expected.get(c.service, 0) for c in counts)
    except BaseException:
        cmd_down(argparse.Namespace(keep_broker=False), settings)
        raise
    if args.stop:
        cmd_down(argparse.Namespace(keep_broker=False), settings)
    if args.held_out_customers > 0:
        # The rules on populations they were not tuned on, replayed without Kafka.
        from services.simulator.heldout import (
            DEFAULT_DAYS,
            DEFAULT_WORKERS,
            HELD_OUT_SEEDS,
            PROFILES,
        )

        console.rule("Held-out evaluation")
        held_out_evaluation(
            list(HELD_OUT_SEEDS),
            list(PROFILES),
            args.held_out_customers,
            DEFAULT_DAYS,
            DEFAULT_WORKERS,
            settings.home / "report" / "held-out",
        )
    if not args.stop:
        # Left running (idle workers cost the replay above little): the workbench shows what
        # the workers concluded.
        _workbench_links(settings)
    return 0 if ok else 1
