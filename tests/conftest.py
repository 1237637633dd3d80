"""Fixtures for the real components: a fresh Apache Kafka broker per test session and the
PostgreSQL that `./run test` starts. A missing component fails the tests that need it: it never
skips them, so a green run always means they ran."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.broker import BrokerError, LocalBroker
from services.runtime.cluster import LocalCluster
from tests.credentials import API_KEYS_JSON

TEST_BROKER_PORT = int(os.environ.get("RAPPORT_TEST_BROKER_PORT", "19092"))


@pytest.fixture(autouse=True)
def api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every API a test builds knows the callers of tests/credentials.py."""
    for name in list(os.environ):
        if name.startswith("RAPPORT_AUTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RAPPORT_AUTH_API_KEYS", API_KEYS_JSON)


@pytest.fixture(scope="session")
def rapport_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home directory of its own for this test session (state, SQLite, broker data)."""
    return tmp_path_factory.mktemp("rapport-home")


def own_broker(home: Path, port: int, heap: str, **options: object) -> LocalBroker:
    """A broker of the tests' own, on the jars the project assembled before (not copied
    again per session)."""
    shared_home = Path(os.environ.get("RAPPORT_HOME", Path.home() / ".cache" / "rapport"))
    broker = LocalBroker(home, port=port, heap=heap, **options)  # type: ignore[arg-type]
    broker.assemble = lambda: LocalBroker(shared_home).assemble()  # type: ignore[method-assign]
    return broker


def own_cluster(home: Path, port: int, nodes: int, heap: str) -> LocalCluster:
    """A local cluster of the tests' own, on the jars the project assembled before."""
    cluster = LocalCluster(home, port=port, nodes=nodes, heap=heap)
    shared = own_broker(home, port, heap)
    for node in cluster.nodes:
        node.assemble = shared.assemble  # type: ignore[method-assign]
    return cluster


@pytest.fixture(scope="session")
def kafka(rapport_home: Path) -> Iterator[LocalBroker]:
    """A real single-node Kafka, started fresh for this session on its own port, so tests never
    see a developer's demo data; its jars are shared with `rapport broker start`."""
    broker = own_broker(rapport_home, TEST_BROKER_PORT, "768m")
    try:
        broker.start(timeout=120)
    except BrokerError as exc:
        pytest.fail(f"the real Kafka broker is needed and could not start: {exc}")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL database of `./run test` (RAPPORT_TEST_POSTGRES_URL)."""
    url = os.environ.get("RAPPORT_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(
            "RAPPORT_TEST_POSTGRES_URL is not set: run the tests with ./run test, which starts "
            "PostgreSQL, or point it at a PostgreSQL database you own"
        )
    return url
