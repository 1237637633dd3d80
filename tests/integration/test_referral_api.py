"""The referral API over the read model: codes, a customer's referrals, the funnel, and the
review of held referrals with its errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from schemas.referral import LeadChanged, LeadStrength, LeadType, ReferralChanged, ReferralReason
from services.referral import read_model
from services.runtime import db
from services.runtime.api import load_api
from services.runtime.broker import LocalBroker
from services.runtime.settings import RuntimeSettings
from tests.credentials import ADMIN, CHANNEL, OPS

T = datetime(2025, 5, 1, tzinfo=UTC)


def referral(kind: str, rid: str, referee: str, **fields: object) -> ReferralChanged:
    return ReferralChanged(
        event_id=f"{kind}-{rid}",
        type=kind,
        occurred_at=T,
        referral_id=rid,
        referrer="R1",
        referee=referee,
        via="code",
        lead_type=LeadType.RETAIL,
        channel="mobile",
        **fields,
    )


@pytest.fixture
def client(kafka: LocalBroker, tmp_path: Path) -> TestClient:
    """The API as the bank's customer-facing channel calls it (others say so per request)."""
    settings = RuntimeSettings(kafka_bootstrap_servers=kafka.bootstrap, home=tmp_path)
    url = settings.resolved_database_url
    db.upgrade(url)
    lead = LeadChanged(
        event_id="lead-1",
        type="lead.detected",
        occurred_at=T,
        lead_id="L1",
        counterparty_key="cp1",
        lead_type=LeadType.RETAIL,
        suggested_referrer="R1",
        strength=LeadStrength(
            transactions=3, customers=1, amount="300", direction="paid_to", window_days=90
        ),
        last_transaction_at=T,
        expires_at=T,
    )
    read_model.write(
        url,
        [
            lead,
            referral("referral.attributed", "r1", "N1"),
            referral("referral.qualified", "r1", "N1"),
            referral("referral.attributed", "r2", "N2"),  # a replayed older stage never wins:
            referral(
                "referral.rejected",
                "r2",
                "N2",
                reason_code=ReferralReason.SELF_REFERRAL,
                reason="x",
            ),
            referral("referral.held", "r3", "N3", reason_code=ReferralReason.VELOCITY, reason="y"),
        ],
    )
    read_model.write(url, [referral("referral.attributed", "r2", "N2")])
    later = lead.model_copy(
        update={"event_id": "lead-2", "type": "lead.updated", "occurred_at": T + timedelta(days=3)}
    )
    read_model.write(url, [later])
    with db.get_engine(url).connect() as connection:
        detected, updated = connection.execute(
            text("SELECT detected_at, updated_at FROM referral_leads WHERE lead_id = 'L1'")
        ).one()
    assert str(detected).startswith("2025-05-01") and str(updated).startswith("2025-05-04")
    return TestClient(load_api("referral", settings), headers=CHANNEL)


def test_codes_referrals_and_funnel(client: TestClient) -> None:
    issued = client.post("/customers/R1/referral-codes")
    assert issued.status_code == 201
    code = issued.json()["code"]
    assert len(code) == 8 and code.isalnum() and code.isupper()
    assert client.post("/customers/not a customer/referral-codes").status_code == 422

    mine = client.get("/customers/R1/referrals").json()
    assert mine["codes"] == [code]
    assert {r["referral_id"]: r["status"] for r in mine["referrals"]} == {
        "r1": "qualified",
        "r2": "rejected",
        "r3": "held",
    }
    assert mine["leads_suggested"] == 1
    (listed,) = mine["leads"]  # the lead, at its latest update
    assert listed["lead_id"] == "L1"
    assert listed["detected_at"].startswith("2025-05-01")
    assert listed["updated_at"].startswith("2025-05-04")

    assert client.get("/referrals/funnel").status_code == 403  # not the channel's business
    retail = client.get("/referrals/funnel", headers=OPS).json()["by_lead_type"]["retail"]
    assert (retail["leads"], retail["attributed"], retail["qualified"]) == (1, 1, 1)
    assert (retail["rejected"], retail["held"]) == (1, 1)


def test_review_needs_an_administrator_and_a_held_referral(client: TestClient) -> None:
    body = {"decision": "release"}
    assert client.post("/referrals/r3/review", json=body).status_code == 403
    assert client.post("/referrals/r3/review", json=body, headers=OPS).status_code == 403
    unknown = client.post("/referrals/r3/review", json=body, headers={"X-API-Key": "nope"})
    assert unknown.status_code == 401
    token = ADMIN
    missing = client.post("/referrals/zzz/review", json=body, headers=token)
    assert missing.status_code == 404 and "zzz" in missing.json()["detail"]
    not_held = client.post("/referrals/r1/review", json=body, headers=token)
    assert not_held.status_code == 409 and "qualified" in not_held.json()["detail"]
    bad = client.post("/referrals/r3/review", json={"decision": "maybe"}, headers=token)
    assert bad.status_code == 422
    accepted = client.post("/referrals/r3/review", json=body, headers=token)
    assert accepted.status_code == 202 and accepted.json()["decision"] == "release"
