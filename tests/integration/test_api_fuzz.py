"""Schemathesis against each service's OpenAPI document: requests generated from the schema
(valid and invalid) never get a server error, every answer matches the schema, and the APIs
refuse what they should: no credentials (401), a role that may not (403), oversized bodies,
pagination abuse and malformed idempotency keys (4xx with the reason)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from services.runtime import db
from services.runtime.api import load_api
from services.runtime.broker import LocalBroker
from services.runtime.settings import SERVICE_NAMES, RuntimeSettings
from tests.credentials import ADMIN, CHANNEL, OPS


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_no_server_error_and_every_answer_matches_the_schema(
    service: str, topics: LocalBroker, tmp_path: Path
) -> None:
    """Each operation of the service's OpenAPI document, through its hypothesis strategy
    (schemathesis' pytest plugin does not run under pytest 9, its Python API does)."""
    settings = RuntimeSettings(kafka_bootstrap_servers=topics.bootstrap, home=tmp_path)
    db.upgrade(settings.resolved_database_url)
    schema = schemathesis.openapi.from_asgi("/openapi.json", load_api(service, settings))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck)
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=ADMIN,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            )

        call()


@pytest.fixture
def rewards(tmp_path: Path) -> TestClient:
    settings = RuntimeSettings(home=tmp_path)
    db.upgrade(settings.resolved_database_url)
    return TestClient(load_api("rewards", settings), headers=CHANNEL)


def test_abuse_gets_a_clear_4xx(rewards: TestClient) -> None:
    # Pagination past its bounds.
    # A cursor past SQL's BIGINT (found by schemathesis: it was a database error, a 500).
    for params in (
        {"limit": 0},
        {"limit": 100_000},
        {"after": -1},
        {"after": 2**63},
        {"limit": "all"},
    ):
        answer = rewards.get("/customers/C1/ledger", params=params)
        assert answer.status_code == 422, params
        assert answer.json()["detail"][0]["loc"][0] == "query"
    # Malformed idempotency keys: too short, too long, missing.
    body = {"points": 10, "description": "tickets"}
    for key in ("short", "k" * 129):
        answer = rewards.post(
            "/customers/C1/redemptions", json=body, headers={"Idempotency-Key": key}
        )
        assert answer.status_code == 422 and "idempotency-key" in answer.text.lower()
    assert rewards.post("/customers/C1/redemptions", json=body).status_code == 422
    # Oversized and malformed bodies.
    huge = {"points": 10, "description": "x" * 1_000_000}
    answer = rewards.post(
        "/customers/C1/redemptions", json=huge, headers={"Idempotency-Key": "key-123456"}
    )
    assert answer.status_code in (413, 422)
    broken = rewards.post(
        "/customers/C1/redemptions",
        content=b"{not json",
        headers={"Idempotency-Key": "key-123456", "Content-Type": "application/json"},
    )
    assert broken.status_code == 422
    # Who may not.
    assert rewards.get("/customers/C1/rewards", headers={"X-API-Key": ""}).status_code == 401
    assert rewards.get("/rewards/summary").status_code == 403
    assert rewards.get("/rewards/summary", headers=OPS).status_code == 200
