"""The `rapport` command as a user runs it, against the session's real broker."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.runtime.broker import LocalBroker, kafka_version
from services.runtime.cluster import LocalCluster
from tests.conftest import TEST_BROKER_PORT, own_broker
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


def test_a_local_cluster_of_three_nodes_is_started_listed_and_stopped_node_by_node(
    tmp_path: Path,
) -> None:
    """`rapport broker start --nodes 3` as an operator tries it: the nodes and the active
    controller listed, one node killed and started again, the topics replicated three times."""
    home = tmp_path / "home"
    home.mkdir()
    # The jars the project assembled before, not assembled again into this home.
    libs = own_broker(tmp_path, TEST_BROKER_PORT, "256m").classpath().removesuffix("/*")
    (home / f"kafka-{kafka_version()}").mkdir()
    (home / f"kafka-{kafka_version()}" / "lib").symlink_to(libs)
    # After the fault suite's clusters (tests/integration/test_pipeline_faults.py).
    port = TEST_BROKER_PORT + 200
    cluster = LocalCluster(home, port=port, nodes=3)
    env = {**service_env(cluster, home), "RAPPORT_BROKER_HEAP": "384m"}
    try:
        started = rapport(env, "broker", "start", "--nodes", "3", timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        assert cluster.bootstrap in started.stdout
        listed = rapport(env, "broker", "status")
        assert listed.returncode == 0, listed.stdout
        assert listed.stdout.count(" yes ") == 3 and "active" in listed.stdout

        killed = rapport(env, "broker", "stop", "--node", "2", "--kill")
        assert "node 2 stopped" in killed.stdout
        listed = rapport(env, "broker", "status")
        assert listed.stdout.count(" yes ") == 2 and " no " in listed.stdout
        assert "active" in listed.stdout  # two of three controllers are a quorum
        again = rapport(env, "broker", "start", "--node", "2", timeout=180)
        assert again.returncode == 0, again.stdout + again.stderr

        topics = rapport(env, "topics", "create")
        assert topics.returncode == 0, topics.stdout + topics.stderr
        rows = [line for line in topics.stdout.splitlines() if "bank.account-events.v1" in line]
        assert rows and all(line.split("│")[3].strip() == "3" for line in rows), topics.stdout
        assert all(line.split("│")[4].strip() == "2" for line in rows), topics.stdout
    finally:
        stopped = rapport(env, "broker", "stop")
        assert "stopped 3 of 3 nodes" in stopped.stdout, stopped.stdout
