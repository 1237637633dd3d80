"""The rewards HTTP API over a real ledger: balances, pages of entries, idempotent redemptions
and the administrators' campaigns, adjustments, flag reviews and audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from schemas.referral import LeadType, ReferralChanged
from services.rewards import service
from services.rewards.domain import RewardRules
from services.runtime import db
from services.runtime.api import load_api
from services.runtime.settings import RuntimeSettings
from tests.credentials import ADMIN, CHANNEL, OPS

T = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The API as the bank's customer-facing channel calls it (admins say so per request)."""
    settings = RuntimeSettings(home=tmp_path)
    url = settings.resolved_database_url
    db.upgrade(url)
    for n in range(3):
        event = ReferralChanged(
            event_id=f"q-{n}",
            type="referral.qualified",
            occurred_at=T,
            referral_id=f"ref-{n}",
            referrer="R1",
            referee=f"E{n}",
            via="code",
            lead_type=LeadType.RETAIL,
        )
        service.apply(url, event, RewardRules(), T)
    return TestClient(load_api("rewards", settings), headers=CHANNEL)


def test_balance_and_paged_ledger(client: TestClient) -> None:
    body = client.get("/customers/R1/rewards").json()
    assert (body["points"], body["flagged"], body["pending"]["referrals"]) == (600, False, 0)
    assert client.get("/customers/NOBODY/rewards").status_code == 404
    first = client.get("/customers/R1/ledger", params={"limit": 2}).json()
    assert [e["points"] for e in first["entries"]] == [200, 200]
    assert first["entries"][0]["source_event_id"] == "q-0"
    rest = client.get("/customers/R1/ledger", params={"after": first["next_after"]}).json()
    assert len(rest["entries"]) == 1 and rest["next_after"] is None


def test_redemptions_are_idempotent_and_never_overdraw(client: TestClient) -> None:
    key = {"Idempotency-Key": "order-000123"}
    body = {"points": 250, "description": "cinema tickets"}
    first = client.post("/customers/R1/redemptions", json=body, headers=key)
    assert first.status_code == 201 and first.json()["points_balance"] == 350
    again = client.post("/customers/R1/redemptions", json=body, headers=key)
    assert (again.status_code, again.json()) == (201, first.json())
    other = client.post("/customers/R1/redemptions", json={**body, "points": 1}, headers=key)
    assert other.status_code == 422 and "different" in other.json()["detail"][0]["msg"]
    too_much = client.post(
        "/customers/R1/redemptions",
        json=body | {"points": 351},
        headers={"Idempotency-Key": "k-2-abcdef"},
    )
    assert too_much.status_code == 409 and too_much.json()["error"] == "insufficient_balance"
    assert client.post("/customers/R1/redemptions", json=body).status_code == 422  # no key
    assert client.get("/customers/R1/rewards").json()["points"] == 350


def test_administration_needs_an_administrator(client: TestClient) -> None:
    adjustment = {"points": 50, "reason": "goodwill after complaint"}
    assert client.post("/customers/C9/adjustments", json=adjustment).status_code == 403
    assert client.post("/customers/C9/adjustments", json=adjustment, headers=OPS).status_code == 403
    assert client.get("/rewards/summary").status_code == 403  # the channel sees no totals
    assert client.get("/rewards/summary", headers=OPS).status_code == 200
    booked = client.post("/customers/C9/adjustments", json=adjustment, headers=ADMIN)
    assert booked.status_code == 201 and booked.json()["kind"] == "adjustment"
    assert (
        client.post("/customers/C9/adjustments", json={"points": 5}, headers=ADMIN).status_code
        == 422
    )
    nothing = {"points": 0, "reason": "goodwill after complaint"}
    zero = client.post("/customers/C9/adjustments", json=nothing, headers=ADMIN)
    assert zero.status_code == 422
    assert "0 points changes nothing" in zero.json()["detail"][0]["msg"]
    assert (
        client.post(
            "/customers/C9/flag-clearance", json={"note": "nothing to clear"}, headers=ADMIN
        ).status_code
        == 409
    )


def test_campaigns_are_created_listed_changed_and_audited(client: TestClient) -> None:
    campaign = {
        "campaign_id": "double-june",
        "name": "Double referral points in June",
        "rule": "referral.referrer",
        "multiplier": "2",
        "starts_at": "2026-06-01T00:00:00Z",
        "ends_at": "2026-07-01T00:00:00Z",
    }
    assert client.post("/campaigns", json=campaign, headers=ADMIN).status_code == 201
    assert client.post("/campaigns", json=campaign, headers=ADMIN).status_code == 409
    bad = client.post(
        "/campaigns",
        json=campaign | {"campaign_id": "x", "ends_at": "2026-05-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert bad.status_code == 422 and "ends_at" in bad.text
    assert [c["campaign_id"] for c in client.get("/campaigns", headers=ADMIN).json()] == [
        "double-june"
    ]
    ended = client.patch("/campaigns/double-june", json={"active": False}, headers=ADMIN)
    assert ended.status_code == 200 and ended.json()["active"] is False
    wrong = client.patch(
        "/campaigns/double-june", json={"ends_at": "2026-01-01T00:00:00Z"}, headers=ADMIN
    )
    # The service's own rules answer in the shape of FastAPI's validation errors (the 422 the
    # OpenAPI document declares).
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["msg"].startswith("the campaign would not be valid")
    assert client.patch("/campaigns/nope", json={"active": True}, headers=ADMIN).status_code == 404
    audit = client.get("/audit", headers=ADMIN).json()
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("admin-ann", "campaign_updated"),
        ("admin-ann", "campaign_created"),
    ]
