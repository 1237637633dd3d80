"""The `rapport` command as a user runs it, against the session's real broker."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.runtime.broker import LocalBroker, kafka_version
from tests.integration.stack import rapport, service_env


def test_broker_status_reports_the_apache_kafka_version_it_runs(
    kafka: LocalBroker, rapport_home: Path
) -> None:
    result = rapport(service_env(kafka, rapport_home), "broker", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Apache Kafka {kafka_version()}" in result.stdout
    assert kafka.bootstrap in result.stdout
    assert kafka_version().startswith(("3.9.", "4."))


def test_broker_start_is_idempotent(kafka: LocalBroker, rapport_home: Path) -> None:
    pid = kafka.pid()
    result = rapport(service_env(kafka, rapport_home), "broker", "start")
    assert result.returncode == 0, result.stdout + result.stderr
    assert kafka.pid() == pid


def test_topics_create_creates_every_topic_once(kafka: LocalBroker, rapport_home: Path) -> None:
    env = service_env(kafka, rapport_home)
    first = rapport(env, "topics", "create")
    assert first.returncode == 0, first.stdout + first.stderr
    second = rapport(env, "topics", "create")
    assert "created" not in second.stdout
    for name in ("bank.account-events.v1", "bank.account-events.v1.dlq", "rapport.rm-tasks.v1"):
        assert name in second.stdout
    assert "compact" in second.stdout


def test_worker_refuses_an_unwritable_state_directory(kafka: LocalBroker, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    result = rapport(service_env(kafka, blocker), "worker", "lifecycle", timeout=60)
    assert result.returncode == 2
    assert "cannot write the worker's state directory" in result.stderr


@contextmanager
def a_full_disk(where: Path) -> Iterator[Path]:
    """A 256 KiB file system (tmpfs; ./run test runs as root or with sudo), filled up."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"a small file system is needed: {mounted.stderr}"
    try:
        try:
            with (where / "filler").open("wb") as filler:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_worker_refuses_a_full_disk(kafka: LocalBroker, tmp_path: Path) -> None:
    with a_full_disk(tmp_path / "full") as home:
        result = rapport(service_env(kafka, home), "worker", "lifecycle", timeout=60)
    assert result.returncode == 2
    assert "cannot write the worker's state directory" in result.stderr
    assert "No space left on device" in result.stderr
