"""The `rapport` command: broker, topics, database, workers, APIs, the local stack and the demo."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Collection
from typing import TypeVar

from services.runtime.settings import API_NAMES, SERVICE_NAMES, RuntimeSettings, get_settings

T = TypeVar("T")


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
    from services.bench.harness import KNOWN_SECTIONS

    return KNOWN_SECTIONS


def _bench_stores() -> Collection[str]:
    from services.bench.harness import STORES

    return STORES


Command = Callable[[argparse.Namespace, RuntimeSettings], int]


def _command(module: str, name: str) -> Command:
    """A command whose module (`services.cli.<module>`) is imported only when it runs. Every
    worker's start is a `rapport worker` command: the local stack's and the demo's modules (the
    supervisor, the workbench's sessions, the APIs' authentication) had been a quarter of a
    second of each start."""

    def run(args: argparse.Namespace, settings: RuntimeSettings) -> int:
        command: Command = getattr(importlib.import_module(f"services.cli.{module}"), name)
        return command(args, settings)

    # What it runs, for the test that every command names a function its module has.
    run.__name__ = f"{module}.{name}"
    return run


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="rapport", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="the local Apache Kafka (KRaft): one node, or a cluster")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument(
        "--nodes",
        type=int,
        default=None,
        help="start: a local cluster of this many nodes (default: one broker, or the cluster "
        "made earlier in this home)",
    )
    p.add_argument("--node", type=int, default=None, help="a cluster's node to start or stop")
    p.add_argument("--kill", action="store_true", help="stop: SIGKILL, no clean shutdown")
    p.set_defaults(func=_command("ops", "cmd_broker"))

    p = sub.add_parser("topics", help="create every topic, dead-letter topics included")
    p.add_argument("action", choices=["create"])
    p.add_argument("--partitions", type=int, default=None)
    p.set_defaults(func=_command("ops", "cmd_topics"))

    p = sub.add_parser("dlq", help="show dead letters, or replay them once the cause is fixed")
    p.add_argument("action", choices=["show", "replay"])
    p.add_argument("--topic", help="one .dlq topic (default: all of them)")
    p.add_argument("--reason", help="replay only this reason code")
    p.add_argument("--service", help="replay only what this service refused")
    p.add_argument("--last", type=int, default=10, help="show: the newest N, with their errors")
    p.add_argument("--dry-run", action="store_true", help="replay: count, send nothing")
    p.set_defaults(func=_command("ops", "cmd_dlq"))

    p = sub.add_parser("db", help="database schema (Alembic)")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=_command("ops", "cmd_db"))

    p = sub.add_parser("schemas", help="export JSON Schema and AsyncAPI files")
    p.add_argument("action", choices=["export"])
    p.add_argument("--check", action="store_true", help="fail if the files are out of date")
    p.set_defaults(func=_command("ops", "cmd_schemas"))

    p = sub.add_parser("worker", help="run a service's faust worker")
    p.add_argument("service", choices=SERVICE_NAMES)
    p.set_defaults(func=_command("ops", "cmd_worker"))

    p = sub.add_parser("api", help="run a service's HTTP API, or the workbench's pages")
    p.add_argument("service", choices=API_NAMES)
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=_command("ops", "cmd_api"))

    p = sub.add_parser("up", help="broker, topics, database and all services in the background")
    p.set_defaults(func=_command("ops", "cmd_up"))

    p = sub.add_parser("down", help="stop what `rapport up` started")
    p.add_argument("--keep-broker", action="store_true")
    p.set_defaults(func=_command("ops", "cmd_down"))

    p = sub.add_parser("produce", help="load JSON-lines events into bank.account-events.v1")
    p.add_argument("file")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    p.set_defaults(func=_command("ops", "cmd_produce"))

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
    p.set_defaults(func=_command("demo", "cmd_simulate"))

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
    p.set_defaults(func=_command("demo", "cmd_evaluate"))

    p = sub.add_parser("status", help="what each running worker accepted and dead-lettered")
    p.set_defaults(func=_command("ops", "cmd_status"))

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
    p.add_argument(
        "--stop",
        action="store_true",
        help="stop the stack at the end (by default it stays up for the workbench)",
    )
    p.add_argument(
        "--held-out-customers",
        type=int,
        default=400,
        help="customers per run of the held-out evaluation after the live one (0: skip it)",
    )
    p.set_defaults(func=_command("demo", "cmd_demo"))

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
        help="comma-separated: probes, throughput, memory, recovery, latency (default: these "
        "five), and scale-out (1-3 processes a service; with throughput)",
    )
    p.add_argument(
        "--stores",
        type=comma_list(known=_bench_stores),
        default="memory,rocksdb",
        help="the lifecycle stores whose memory and recovery to measure (default: both)",
    )
    p.set_defaults(func=_command("ops", "cmd_bench"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rapport` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args, get_settings()))
