"""Rapport on a broker that requires SASL/SCRAM: with the credentials in RAPPORT_KAFKA_*,
topics are created, records sent and read back, and a worker turns an account opening into a
stage change; with a wrong password, or none, nothing gets through."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.errors import KafkaError

from schemas.topics import ACCOUNT_EVENTS, STAGE_CHANGED
from services.runtime.broker import BrokerError, LocalBroker
from services.runtime.kafka_security import kafka_security
from services.runtime.produce import send_and_confirm
from services.runtime.readback import read_topics
from services.runtime.settings import RuntimeSettings
from services.runtime.topics import create_topics
from tests.conftest import TEST_BROKER_PORT, own_broker
from tests.integration.stack import service_env, worker

USER, PASSWORD = "rapport-svc", "scram-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    broker = own_broker(
        tmp_path_factory.mktemp("sasl-home"),
        TEST_BROKER_PORT + 100,
        "512m",
        scram_user=(USER, PASSWORD),
    )
    try:
        broker.start(timeout=120)
    except BrokerError as exc:
        pytest.fail(f"the SASL broker could not start: {exc}")
    yield broker
    broker.stop()


def use_credentials(monkeypatch: pytest.MonkeyPatch, password: str | None) -> None:
    if password is None:
        monkeypatch.delenv("RAPPORT_KAFKA_SECURITY_PROTOCOL", raising=False)
    else:
        monkeypatch.setenv("RAPPORT_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        monkeypatch.setenv("RAPPORT_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
        monkeypatch.setenv("RAPPORT_KAFKA_SASL_USERNAME", USER)
        monkeypatch.setenv("RAPPORT_KAFKA_SASL_PASSWORD", password)
    kafka_security.cache_clear()


@pytest.fixture(autouse=True)
def fresh_security() -> Iterator[None]:
    kafka_security.cache_clear()
    yield
    kafka_security.cache_clear()


def test_wrong_or_missing_credentials_get_nothing_through(
    sasl_broker: LocalBroker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = RuntimeSettings(kafka_bootstrap_servers=sasl_broker.bootstrap, home=tmp_path)
    use_credentials(monkeypatch, "not-the-password")
    with pytest.raises(KafkaError):
        asyncio.run(asyncio.wait_for(create_topics(settings), 60))
    use_credentials(monkeypatch, None)
    with pytest.raises((KafkaError, TimeoutError)):
        asyncio.run(asyncio.wait_for(create_topics(settings), 30))


def test_a_worker_runs_on_a_scram_broker(
    sasl_broker: LocalBroker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_credentials(monkeypatch, PASSWORD)
    settings = RuntimeSettings(kafka_bootstrap_servers=sasl_broker.bootstrap, home=tmp_path)
    created = asyncio.run(create_topics(settings))
    assert any(r.name == ACCOUNT_EVENTS.name for r in created)
    customer = f"S{uuid.uuid4().hex[:8]}"
    opened = {
        "event_id": f"{customer}-open",
        "event_type": "account.opened",
        "occurred_at": "2026-05-01T09:00:00Z",
        "customer_id": customer,
        "account_id": f"{customer}-A",
    }
    asyncio.run(
        send_and_confirm(
            settings.bootstrap_list,
            [(ACCOUNT_EVENTS.name, customer.encode(), orjson.dumps(opened), [])],
        )
    )
    env = service_env(sasl_broker, tmp_path)  # carries the RAPPORT_KAFKA_* credentials
    with worker("lifecycle", env, tmp_path) as running:
        running.wait_for("rapport_events_consumed_total", 1, event_type="account.opened")
        deadline = time.monotonic() + 60
        while True:
            records = asyncio.run(read_topics(settings.bootstrap_list, [STAGE_CHANGED.name]))
            stages = [orjson.loads(r.value or b"{}") for r in records[STAGE_CHANGED.name]]
            if any(s["customer_id"] == customer for s in stages):
                break
            assert time.monotonic() < deadline, "no stage change on the SASL broker"
            time.sleep(1)
    (stage,) = [s for s in stages if s["customer_id"] == customer]
    assert stage["stage"] == "acquisition"
