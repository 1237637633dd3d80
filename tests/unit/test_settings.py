"""Settings come from the environment, with the names operators already use."""

from __future__ import annotations

import pytest

from services.runtime.app import create_app
from services.runtime.db import normalise_url
from services.runtime.settings import RuntimeSettings


def test_standard_environment_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092, k2:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db/rapport")
    settings = RuntimeSettings()
    assert settings.bootstrap_list == ["k1:9092", "k2:9092"]
    assert settings.resolved_database_url == "postgresql://u:p@db/rapport"


def test_sqlite_file_under_home_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("RAPPORT_HOME", "/var/lib/rapport")
    assert RuntimeSettings().resolved_database_url == "sqlite:////var/lib/rapport/rapport.db"


def test_instance_suffix_separates_consumer_groups() -> None:
    assert RuntimeSettings(instance="blue").app_id("lifecycle") == "rapport-lifecycle-blue"
    assert RuntimeSettings().app_id("notify") == "rapport-notify"


def test_workers_commit_at_the_configured_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    # faust's own 2.8 s had made every group lag its work by 1.4 s on average.
    assert create_app("rewards", RuntimeSettings()).conf.broker_commit_interval == 0.5
    monkeypatch.setenv("RAPPORT_COMMIT_INTERVAL_SECONDS", "2")
    assert create_app("rewards", RuntimeSettings()).conf.broker_commit_interval == 2.0


def test_each_service_has_its_own_ports() -> None:
    settings = RuntimeSettings(metrics_port_base=9100, api_port_base=8100)
    ports = {settings.metrics_port(s) for s in ("lifecycle", "referral", "rewards", "notify")}
    assert ports == {9101, 9102, 9103, 9104}
    assert settings.api_port("notify") == 8104


def test_postgres_urls_use_psycopg3() -> None:
    assert normalise_url("postgresql://h/db") == "postgresql+psycopg://h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
