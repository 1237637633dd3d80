"""Starting a service's faust worker as a process of its own."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import faust

from schemas.topics import TopicSpec
from services.runtime import allocator, db
from services.runtime.logs import logging_config
from services.runtime.metrics import serve_metrics
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings
from services.runtime.topics import create_topics

log = logging.getLogger(__name__)

# faust's -l takes these names, not Python's (faust-streaming rejects "warning").
_FAUST_LOG_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warn",
    "warn": "warn",
    "error": "error",
    "critical": "crit",
    "crit": "crit",
}


class StateDirectoryError(RuntimeError):
    """The local state directory cannot be written: running on would lose state silently."""


def check_state_directory(path: Path) -> None:
    """Fail early and clearly when the state directory is not writable (permissions, full disk)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-") as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise StateDirectoryError(
            f"cannot write the worker's state directory {path}: {exc.strerror or exc}; "
            "fix its permissions or free disk space, or set RAPPORT_HOME to another directory"
        ) from exc


def load_app(service: str, settings: RuntimeSettings) -> faust.App:
    """The faust app of a service, with its agents registered."""
    if service not in SERVICE_NAMES:
        raise ValueError(f"unknown service {service!r}; choose one of {', '.join(SERVICE_NAMES)}")
    module = importlib.import_module(f"services.{service}.agents")
    app: faust.App = module.build_app(settings)
    return app


def changelog_topics(service: str, app: faust.App) -> tuple[TopicSpec, ...]:
    """The changelog topics of a worker's tables, compacted like faust makes them."""
    return tuple(
        TopicSpec(
            name=table.changelog_topic.get_topic_name(),
            description=f"changelog of the {service} table {name}",
            key="the table's key",
            payload=None,
            producers=(service,),
            consumers=(service,),
            compacted=True,
            has_dlq=False,
        )
        for name, table in app.tables.items()
    )


def run_worker(service: str, settings: RuntimeSettings, app: faust.App | None = None) -> None:
    """Run the worker in the foreground until SIGTERM or SIGINT (`app`: another app in the
    service's place, as the bench's probes are)."""
    app = app or load_app(service, settings)
    check_state_directory(Path(app.conf.datadir))
    # faust creates its tables' changelog topics as it starts, and the consumer group can be
    # assigned before their metadata reaches it: the demo's referral worker then ran with a
    # table missing its changelog partitions ("Ignoring missing topic") and stalled on its
    # first event. Created here first, they exist before the consumer subscribes.
    asyncio.run(create_topics(settings, specs=changelog_topics(service, app)))
    # Workers write read models and ledgers: bring the schema to head first (a no-op when
    # `rapport up` or `rapport db upgrade` already did).
    db.upgrade(settings.resolved_database_url)
    serve_metrics(settings.metrics_port(service), settings.metrics_host)
    level = _FAUST_LOG_LEVELS.get(settings.log_level.lower(), "info")
    worker = _Worker(
        app,
        loglevel=level,
        quiet=True,
        logging_config=logging_config(service, settings.log_level, settings.log_format),
    )
    app.task(_dump_on_sigquit)
    clean_stop, kept = keep_local_state(Path(app.conf.datadir), Path(app.conf.tabledir))

    async def say_how_it_started() -> None:  # as a task: once logging is set up
        if allocator.in_use() == "jemalloc":
            log.info("memory allocator: jemalloc")
        else:
            log.warning(
                "memory allocator: glibc malloc; with jemalloc preloaded (libjemalloc2) the "
                "worker's memory grows far less (docs/operations.md)"
            )
        if kept:
            log.info("local table stores kept: the last stop was clean")
        elif kept is False:
            log.warning(
                "local table stores removed, to be rebuilt from the changelogs: the last "
                "stop was not clean"
            )

    app.task(say_how_it_started)
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        if not stop.code:
            clean_stop.touch()
        raise


# Made in a worker's state directory when it stops cleanly.
CLEAN_STOP = "clean-stop"


def keep_local_state(datadir: Path, tabledir: Path) -> tuple[Path, bool | None]:
    """Keep the tables a worker stored on local disk (RocksDB) only if it last stopped cleanly.
    Returns the file whose presence says so, to be made at the next clean stop, and whether
    they were kept (None: there were none).

    faust writes a table's local store before its changelog record is acknowledged: a process
    killed in between leaves a store that has writes its changelog lacks. Kept, the store would
    pass over the events that made them (already done), and those writes would never reach the
    changelog, so that whichever worker took the partition next would lose them. Removed, the
    store is rebuilt from the changelog, as a memory store always is. After a clean stop faust
    has flushed its producer, so the store and the changelog agree."""
    marker = datadir / CLEAN_STOP
    clean = marker.exists()
    # Taken away while the worker runs: a crash from now on leaves no marker.
    marker.unlink(missing_ok=True)
    if not (tabledir.exists() and any(tabledir.glob("*.db"))):
        return marker, None
    if not clean:
        shutil.rmtree(tabledir)
    return marker, clean


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # faust's terminal spinner sets the root logger to DEBUG at WARN and above, so every
        # debug call in faust and aiokafka built a record: a tenth of a worker's time.
        self.spinner = None


async def _dump_on_sigquit() -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, _dump_tasks)


def _dump_tasks() -> None:
    """`kill -QUIT <pid>`: print where each asyncio task of the worker waits, to the log, the
    whole chain of awaits of each (faust's own dump on SIGUSR1 truncates it). For a worker that
    is alive but makes no progress."""
    tasks = asyncio.all_tasks()
    print(f"--- {len(tasks)} asyncio tasks ---", file=sys.stderr)
    for task in tasks:
        chain = []
        awaited: object = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        print(f"{task.get_name()}:\n    " + "\n    ".join(chain), file=sys.stderr)
    sys.stderr.flush()
