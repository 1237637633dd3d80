"""`rapport` commands that run and look after the platform: the broker, topics, dead letters,
the database, the contracts, the workers and APIs, the local stack, loading events, the
workers' counts and the bench."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
import time
from pathlib import Path

from rich.table import Table

from services.cli.common import (
    console,
    external_cluster,
    local_broker,
    local_cluster,
    local_kafka,
    redact,
    with_local_environment,
)
from services.runtime.cluster import LocalCluster
from services.runtime.observe import WorkerCounts
from services.runtime.settings import RuntimeSettings


def cmd_broker(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport broker start|stop|status [--nodes N] [--node N] [--kill]"""
    from services.runtime.broker import BrokerError

    if external_cluster(settings, args.nodes):
        console.print(
            f"KAFKA_BOOTSTRAP_SERVERS names {settings.kafka_bootstrap_servers}: "
            "that cluster is used and no local broker is managed"
        )
        return 0
    try:
        cluster = local_cluster(settings, args.nodes)
        if cluster is not None:
            return _cluster_action(args, cluster)
        if args.node not in (None, 1):
            raise BrokerError(f"no node {args.node}: no local cluster (`start --nodes 3`)")
        broker = local_broker(settings)
        if args.action == "start":
            started = time.monotonic()
            status = broker.start()
            console.print(
                f"Apache Kafka {status.version} (KRaft) running on {status.bootstrap}, "
                f"pid {status.pid}, ready in {time.monotonic() - started:.1f} s; "
                f"data and log in {status.directory}"
            )
        elif args.action == "stop":
            stopped = broker.stop(kill=args.kill)
            console.print("broker stopped" if stopped else "broker was not running")
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


def _cluster_action(args: argparse.Namespace, cluster: LocalCluster) -> int:
    """The broker commands on a local cluster: every node, or the one of `--node`."""
    if args.action == "start":
        started = time.monotonic()
        if args.node:
            cluster.node(args.node).start()
        else:
            cluster.start()
        console.print(
            f"{'node ' + str(args.node) if args.node else 'every node'} running, ready in "
            f"{time.monotonic() - started:.1f} s; clients: "
            f"KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap}"
        )
    elif args.action == "stop":
        if args.node:
            stopped = cluster.node(args.node).stop(kill=args.kill)
            console.print(f"node {args.node} {'stopped' if stopped else 'was not running'}")
        else:
            console.print(f"stopped {cluster.stop()} of {len(cluster.nodes)} nodes")
    else:
        nodes = cluster.status()
        table = Table(
            "node",
            "listens on",
            "pid",
            "running",
            "controller",
            title=f"local cluster in {cluster.directory} ({cluster.kafka_environment.name}: "
            f"replication factor {cluster.kafka_environment.replication_factor}, min in-sync "
            f"{cluster.kafka_environment.min_insync_replicas})",
        )
        for node in nodes:
            table.add_row(
                str(node.node_id),
                node.status.bootstrap,
                str(node.status.pid or ""),
                "yes" if node.status.running else "[red]no[/red]",
                "active" if node.controller else "",
            )
        console.print(table)
        return 0 if any(n.status.running for n in nodes) else 3
    return 0


def cmd_topics(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport topics create"""
    from services.runtime.topics import create_topics

    results = asyncio.run(create_topics(with_local_environment(settings), args.partitions))
    table = Table(
        "topic", "partitions", "replicas", "min in-sync", "cleanup", "retention (days)", "status"
    )
    for r in results:
        retention = int(r.config["retention.ms"])
        table.add_row(
            r.name,
            str(r.partitions),
            str(r.replication_factor),
            r.config["min.insync.replicas"],
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
        dlq.replay(
            settings.bootstrap_list,
            letters,
            args.reason,
            args.service,
            args.dry_run,
            replayed_by=getpass.getuser(),
        )
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
    console.print(f"database {redact(url)} at revision {db.current_revision(url)}")
    return 0


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
    from services.runtime.logs import logging_config

    # JSON lines like the workers' (the workbench's audit lines among them); uvicorn's own
    # text format with RAPPORT_LOG_FORMAT=text.
    log_config = logging_config(f"{args.service}-api", settings.log_level, settings.log_format)
    if log_config is None:
        # uvicorn's own text lines, and Rapport's (the workbench's audit) through its handler.
        log_config = {
            **uvicorn.config.LOGGING_CONFIG,
            "root": {"handlers": ["default"], "level": settings.log_level.upper()},
        }
    uvicorn.run(
        app,
        host=settings.api_host,
        port=args.port or settings.api_port(args.service),
        log_level=settings.log_level.lower(),
        access_log=False,
        log_config=log_config,
    )
    return 0


def start_stack(settings: RuntimeSettings) -> None:
    """Broker (unless external), topics, database schema, then every worker and API."""
    from services.runtime import db
    from services.runtime.topics import create_topics

    if not external_cluster(settings):
        kafka = local_kafka(settings)
        kafka.start()
        console.print(f"broker: Apache Kafka (KRaft) on {kafka.bootstrap}")
    asyncio.run(create_topics(with_local_environment(settings)))
    console.print("topics: created or present")
    db.upgrade(settings.resolved_database_url)
    console.print(f"database: {redact(settings.resolved_database_url)} migrated")
    from services.cli import supervisor

    supervisor.start(settings, supervisor.all_processes())
    for proc in supervisor.all_processes():
        console.print(
            f"{proc.role:6} {proc.service:9} http://{settings.api_host}:{proc.port(settings)}"
        )


def cmd_up(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport up"""
    from services.cli import supervisor

    start_stack(settings)
    console.print(f"logs in {settings.home / 'run'}; stop with `rapport down`")

    keys = supervisor.development_keys_file(settings)
    if keys.exists():
        console.print(f"development API keys (header X-API-Key), one per role: {keys}")
    return 0


def cmd_down(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport down"""
    from services.cli import supervisor

    stopped = supervisor.stop(settings)
    console.print(f"stopped {len(stopped)} processes")
    if not external_cluster(settings) and not args.keep_broker:
        stopped_broker = local_kafka(settings).stop()
        console.print("broker stopped" if stopped_broker else "broker was not running")
    return 0


def cmd_produce(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport produce FILE"""
    from services.runtime.produce import produce_file

    started = time.monotonic()
    sent = produce_file(settings, Path(args.file), rate=args.rate)
    elapsed = time.monotonic() - started
    console.print(f"sent {sent} events in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.0f}/s)")
    return 0


def print_counts(settings: RuntimeSettings) -> None:
    """A table of what each worker accepted and dead-lettered."""
    from services.runtime.observe import read_workers

    counts_table(read_workers(settings))


def counts_table(counts: list[WorkerCounts]) -> None:
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


def cmd_status(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """rapport status"""
    print_counts(settings)
    return 0


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
        external_cluster(settings),
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
