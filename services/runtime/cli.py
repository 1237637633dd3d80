"""The `rapport` command: broker, topics, database, workers, APIs, the local stack and the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.table import Table

from services.runtime.observe import WorkerCounts
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings, get_settings

T = TypeVar("T")

if TYPE_CHECKING:
    from services.simulator.simulate import Simulation
    from services.simulator.truth import Truth

console = Console()


def _broker(settings: RuntimeSettings):  # type: ignore[no-untyped-def]
    from services.runtime.broker import LocalBroker

    return LocalBroker(settings.home, port=settings.broker_port, heap=settings.broker_heap)


def _external_cluster(settings: RuntimeSettings) -> bool:
    return settings.bootstrap_list != [f"127.0.0.1:{settings.broker_port}"]


def cmd_broker(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport broker start|stop|status"""
    from services.runtime.broker import BrokerError

    if _external_cluster(settings):
        console.print(
            f"KAFKA_BOOTSTRAP_SERVERS names {settings.kafka_bootstrap_servers}: "
            "that cluster is used and no local broker is managed"
        )
        return 0
    broker = _broker(settings)
    try:
        if args.action == "start":
            started = time.monotonic()
            status = broker.start()
            console.print(
                f"Apache Kafka {status.version} (KRaft) running on {status.bootstrap}, "
                f"pid {status.pid}, ready in {time.monotonic() - started:.1f} s; "
                f"data and log in {status.directory}"
            )
        elif args.action == "stop":
            console.print("broker stopped" if broker.stop() else "broker was not running")
        else:
            status = broker.status()
            if not status.running:
                console.print(f"not running (would listen on {status.bootstrap})")
                return 3
            console.print(
                f"running: Apache Kafka {status.version} on {status.bootstrap}, pid {status.pid}"
            )
    except BrokerError as exc:
        console.print(f"[red]broker error:[/red] {exc}")
        return 1
    return 0


def cmd_topics(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport topics create"""
    from services.runtime.topics import create_topics

    results = asyncio.run(create_topics(settings, args.partitions))
    table = Table("topic", "partitions", "cleanup", "retention (days)", "status")
    for r in results:
        retention = int(r.config["retention.ms"])
        table.add_row(
            r.name,
            str(r.partitions),
            r.config["cleanup.policy"],
            "forever" if retention < 0 else f"{retention / 86_400_000:.0f}",
            "created" if r.created else "exists",
        )
    console.print(table)
    return 0


def cmd_dlq(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport dlq show|replay"""
    from schemas.topics import dead_letter_topics
    from services.runtime import dlq

    topics = [args.topic] if args.topic else [t.name for t in dead_letter_topics()]
    letters = asyncio.run(dlq.dead_letters(settings.bootstrap_list, topics))
    if args.action == "show":
        table = Table("dead-letter topic", "service", "reason", "records", title="dead letters")
        for (topic, service, reason), n in sorted(dlq.summary(letters).items()):
            table.add_row(topic, service, reason, str(n))
        console.print(table)
        for d in letters[-args.last :] if args.last else []:
            console.print(f"{d.topic}[{d.partition}]@{d.offset} from {d.source}: {d.error}")
        return 0
    chosen = asyncio.run(
        dlq.replay(settings.bootstrap_list, letters, args.reason, args.service, args.dry_run)
    )
    verb = "would replay" if args.dry_run else "replayed"
    console.print(f"{verb} {len(chosen)} of {len(letters)} dead letters to their source topics")
    return 0


def cmd_db(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport db upgrade|current"""
    from services.runtime import db

    url = settings.resolved_database_url
    if args.action == "upgrade":
        db.upgrade(url)
    console.print(f"database {_redact(url)} at revision {db.current_revision(url)}")
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def cmd_schemas(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport schemas export [--check]"""
    from schemas.export import render_files, write_files

    if args.check:
        stale = [p for p, text in render_files().items() if p.read_text() != text]
        for path in stale:
            console.print(f"[red]out of date:[/red] {path} (run `rapport schemas export`)")
        return 1 if stale else 0
    for path in write_files():
        console.print(f"wrote {path}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport worker <service>"""
    from services.runtime.worker import StateDirectoryError, run_worker

    try:
        run_worker(args.service, settings)
    except StateDirectoryError as exc:
        print(f"rapport worker {args.service}: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_api(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport api <service>"""
    import uvicorn

    from services.runtime.api import load_api

    app = load_api(args.service, settings)
    if not app.state.authenticator.configured:
        logging.getLogger(__name__).warning(
            "no authentication is configured (RAPPORT_AUTH_*): every request but /healthz, "
            "/readyz and /metrics will be refused; see docs/security.md"
        )
    uvicorn.run(
        app,
        host=settings.api_host,
        port=args.port or settings.api_port(args.service),
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


def start_stack(settings: RuntimeSettings) -> None:
    """Broker (unless external), topics, database schema, then every worker and API."""
    from services.runtime import db, supervisor
    from services.runtime.topics import create_topics

    if not _external_cluster(settings):
        status = _broker(settings).start()
        console.print(f"broker: Apache Kafka {status.version} on {status.bootstrap}")
    asyncio.run(create_topics(settings))
    console.print("topics: created or present")
    db.upgrade(settings.resolved_database_url)
    console.print(f"database: {_redact(settings.resolved_database_url)} migrated")
    supervisor.start(settings, supervisor.all_processes())
    for proc in supervisor.all_processes():
        console.print(
            f"{proc.role:6} {proc.service:9} http://{settings.api_host}:{proc.port(settings)}"
        )


def cmd_up(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport up"""
    start_stack(settings)
    console.print(f"logs in {settings.home / 'run'}; stop with `rapport down`")
    from services.runtime import supervisor

    keys = supervisor.development_keys_file(settings)
    if keys.exists():
        console.print(f"development API keys (header X-API-Key), one per role: {keys}")
    return 0


def cmd_down(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport down"""
    from services.runtime import supervisor

    stopped = supervisor.stop(settings)
    console.print(f"stopped {len(stopped)} processes")
    if not _external_cluster(settings) and not args.keep_broker:
        console.print("broker stopped" if _broker(settings).stop() else "broker was not running")
    return 0


def cmd_produce(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport produce FILE"""
    from services.runtime.produce import produce_file

    started = time.monotonic()
    sent = produce_file(settings, Path(args.file), rate=args.rate)
    elapsed = time.monotonic() - started
    console.print(f"sent {sent} events in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.0f}/s)")
    return 0


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


def print_counts(settings: RuntimeSettings) -> None:
    """A table of what each worker accepted and dead-lettered."""
    from services.runtime.observe import read_workers

    _counts_table(read_workers(settings))


def _counts_table(counts: list[WorkerCounts]) -> None:
    summary = Table("worker", "up", "accepted", "dead-lettered", title="What each worker did")
    for c in counts:
        summary.add_row(
            c.service,
            "yes" if c.reachable else "[red]no[/red]",
            str(int(sum(c.consumed.values()))),
            str(int(sum(c.dead_lettered.values()))),
        )
    console.print(summary)
    for title, attribute in (
        ("accepted, by event type", "consumed"),
        ("dead-lettered, by reason", "dead_lettered"),
    ):
        keys = sorted({k for c in counts for k in getattr(c, attribute)})
        if not keys:
            continue
        table = Table("", *(c.service for c in counts), title=title)
        for key in keys:
            table.add_row(key, *(str(int(getattr(c, attribute).get(key, 0))) for c in counts))
        console.print(table)
    for c in counts:
        if c.outcomes:
            table = Table("what happened", "count", title=f"{c.service}: what it concluded")
            for key, value in sorted(c.outcomes.items()):
                table.add_row(key, str(int(value)))
            console.print(table)


def _ops_headers(settings: RuntimeSettings) -> dict[str, str]:
    """The ops role's development key, when `rapport up` made the keys."""
    from services.runtime import supervisor
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


def cmd_status(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport status"""
    print_counts(settings)
    return 0


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

    from services.runtime import supervisor

    if _external_cluster(settings):
        console.print(
            "external cluster: earlier data on it stays, and the evaluation reads only this "
            "run's outputs, but the workers' state may hold earlier customers"
        )
        return
    supervisor.stop(settings)
    _broker(settings).stop()
    removed = []
    for path in (
        _broker(settings).directory,
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
        _counts_table(counts)
        _stage_tier_table(settings)
        _rewards_table(settings)
        report = evaluate_outputs(settings, truth_path, None)
        console.print(f"full report: {report} (charts beside it)")
        ok = all(c.total >= expected.get(c.service, 0) for c in counts)
    finally:
        if not args.keep:
            cmd_down(argparse.Namespace(keep_broker=False), settings)
    if args.held_out_customers > 0:
        # The rules on populations they were not tuned on, without the stack (it is down, so
        # the replay has both cores).
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
    return 0 if ok else 1


def cmd_bench(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport bench"""
    import json

    from services.bench.harness import SECTIONS, run

    def say(message: str) -> None:
        console.print(message, style="dim")

    sections = frozenset(args.only) if args.only else SECTIONS
    stores = tuple(args.stores)
    report = run(
        settings,
        _external_cluster(settings),
        args.events,
        args.customers,
        args.runs,
        say,
        sections=sections,
        stores=stores,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    m = report.machine
    table = Table(
        "figure",
        "median",
        "unit",
        "runs",
        "note",
        title=f"{report.events:,} events, {report.customers:,} customers; {m['cpus']} CPUs, "
        f"{m['memory_mib']:,} MiB, Python {m['python']}, {m['date']}",
    )
    for f in report.figures:
        runs = ", ".join(f"{v:,.1f}" for v in f.runs)
        table.add_row(f.name, f"{f.value:,.1f}", f.unit, runs, f.note)
    console.print(table)
    return 0


def comma_list(
    item: Callable[[str], T] = str,  # type: ignore[assignment]
    known: Callable[[], Collection[str]] | None = None,
) -> Callable[[str], list[T]]:
    """An argparse `type` for a comma-separated option: each part made by `item`, and, with
    `known` (asked only when the option is parsed: the lists live in heavy modules), each
    one of them; argparse reports what was wrong and exits with 2."""

    def parse(text: str) -> list[T]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if known is not None and (unknown := set(parts) - set(known())):
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(sorted(unknown))}; choose from {', '.join(sorted(known()))}"
            )
        try:
            return [item(part) for part in parts]
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None

    return parse


def _profiles() -> Collection[str]:
    from services.simulator.profiles import PROFILES

    return PROFILES


def _bench_sections() -> Collection[str]:
    from services.bench.harness import SECTIONS

    return SECTIONS


def _bench_stores() -> Collection[str]:
    from services.bench.harness import STORES

    return STORES


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="rapport", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="the local single-node Apache Kafka (KRaft)")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("topics", help="create every topic, dead-letter topics included")
    p.add_argument("action", choices=["create"])
    p.add_argument("--partitions", type=int, default=None)
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("dlq", help="show dead letters, or replay them once the cause is fixed")
    p.add_argument("action", choices=["show", "replay"])
    p.add_argument("--topic", help="one .dlq topic (default: all of them)")
    p.add_argument("--reason", help="replay only this reason code")
    p.add_argument("--service", help="replay only what this service refused")
    p.add_argument("--last", type=int, default=10, help="show: the newest N, with their errors")
    p.add_argument("--dry-run", action="store_true", help="replay: count, send nothing")
    p.set_defaults(func=cmd_dlq)

    p = sub.add_parser("db", help="database schema (Alembic)")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("schemas", help="export JSON Schema and AsyncAPI files")
    p.add_argument("action", choices=["export"])
    p.add_argument("--check", action="store_true", help="fail if the files are out of date")
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("worker", help="run a service's faust worker")
    p.add_argument("service", choices=SERVICE_NAMES)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("api", help="run a service's HTTP API")
    p.add_argument("service", choices=SERVICE_NAMES)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("up", help="broker, topics, database and all services in the background")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop what `rapport up` started")
    p.add_argument("--keep-broker", action="store_true")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("produce", help="load JSON-lines events into bank.account-events.v1")
    p.add_argument("file")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("simulate", help="a population with ground truth, to the input or a file")
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--profile",
        default="standard",
        choices=["standard", "varied"],
        help="population profile: today's shares, or other shares and noisier lives",
    )
    p.add_argument("--out", help="write JSON lines here instead of producing to the broker")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    p.add_argument("--truth", help="where to write the truth (JSON)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("evaluate", help="score the services' outputs against a simulation's truth")
    p.add_argument("--truth", default=None, help="the truth file (default: the last simulation's)")
    p.add_argument(
        "--out",
        default=None,
        help="report directory (default: $RAPPORT_HOME/report, with --replay its held-out/)",
    )
    p.add_argument(
        "--replay",
        action="store_true",
        help="held-out evaluation: simulate each seed and profile, replay it through the rules "
        "in-process (no broker) and score it",
    )
    p.add_argument(
        "--seeds",
        type=comma_list(int),
        default="4,5",
        help="--replay: comma-separated seeds (default 4,5: held out; rules are tuned on 1-3)",
    )
    p.add_argument(
        "--profiles",
        type=comma_list(known=_profiles),
        default="standard,varied",
        help="--replay: comma-separated profiles",
    )
    p.add_argument(
        "--customers", type=int, default=400, help="--replay: customers per run (default 400)"
    )
    p.add_argument("--days", type=int, default=365, help="--replay: days per run")
    p.add_argument("--workers", type=int, default=2, help="--replay: runs at a time")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("status", help="what each running worker accepted and dead-lettered")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "demo", help="run everything on the local broker with a simulated population"
    )
    # A thousand customers over a year (about 133,000 events: postings, standing orders and
    # weekly shopping make an account's year three times what it was before 2026-12) take about
    # as long as two thousand did before.
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    p.add_argument(
        "--held-out-customers",
        type=int,
        default=400,
        help="customers per run of the held-out evaluation after the live one (0: skip it)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "bench", help="throughput, memory and recovery against a bare consumer (own broker)"
    )
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3, help="each figure is the median of these")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument(
        "--only",
        type=comma_list(known=_bench_sections),
        metavar="SECTIONS",
        help="comma-separated: probes, throughput, memory, recovery, latency (default: all)",
    )
    p.add_argument(
        "--stores",
        type=comma_list(known=_bench_stores),
        default="memory,rocksdb",
        help="the lifecycle stores whose memory and recovery to measure (default: both)",
    )
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rapport` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args, get_settings()))


if __name__ == "__main__":
    sys.exit(main())
