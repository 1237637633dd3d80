"""Integration fixtures: topics created once per session on the session's broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.runtime.broker import LocalBroker
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics


@pytest.fixture(scope="session")
def topics(kafka: LocalBroker, rapport_home: Path) -> LocalBroker:
    """The session's broker with every Rapport topic created."""
    settings = RuntimeSettings(kafka_bootstrap_servers=kafka.bootstrap, home=rapport_home)
    asyncio.run(create_topics(settings))
    return kafka
