"""Integration fixtures: topics created once per session on the session's broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from services.runtime import db
from services.runtime.broker import LocalBroker
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics


@pytest.fixture(scope="session")
def topics(kafka: LocalBroker, rapport_home: Path) -> LocalBroker:
    """The session's broker with every Rapport topic created."""
    settings = RuntimeSettings(kafka_bootstrap_servers=kafka.bootstrap, home=rapport_home)
    asyncio.run(create_topics(settings))
    return kafka


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, unmigrated database of each kind Rapport supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rapport.db'}"
    url: str = request.getfixturevalue("postgres_url")
    # Start each test from an empty schema so migrations run from the first revision.
    with db.get_engine(url).begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    return url
