"""Every service's API answers health, readiness and metrics, on the real broker and database."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.runtime import db
from services.runtime.api import load_api
from services.runtime.broker import LocalBroker
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_health_readiness_and_metrics(service: str, kafka: LocalBroker, tmp_path: Path) -> None:
    settings = RuntimeSettings(kafka_bootstrap_servers=kafka.bootstrap, home=tmp_path)
    client = TestClient(load_api(service, settings))
    assert client.get("/healthz").json() == {"status": "ok", "service": service}

    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert "rapport db upgrade" in " ".join(not_ready.json()["problems"])

    db.upgrade(settings.resolved_database_url)
    assert client.get("/readyz").status_code == 200

    client.get("/no/such/route")
    metrics = client.get("/metrics").text
    assert f'route="/readyz",service="{service}",status="503"' in metrics
    assert 'route="unmatched"' in metrics


def test_readiness_names_an_unreachable_broker(tmp_path: Path) -> None:
    settings = RuntimeSettings(kafka_bootstrap_servers="127.0.0.1:1", home=tmp_path)
    db.upgrade(settings.resolved_database_url)
    response = TestClient(load_api("lifecycle", settings)).get("/readyz")
    assert response.status_code == 503
    assert "127.0.0.1:1" in response.json()["problems"][0]
