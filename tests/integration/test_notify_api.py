"""The notify HTTP API over a real store: preferences with their validation, a customer's
notifications, RM task lists and outcomes (published on the real broker), the summary and the
uplift."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from schemas.lifecycle import Stage, Tier
from services.notify import service
from services.notify.domain import NotifyRules
from services.runtime import db
from services.runtime.api import load_api
from services.runtime.broker import LocalBroker
from services.runtime.settings import RuntimeSettings
from tests.credentials import ADMIN, CHANNEL, OPS, RM1
from tests.integration.test_notify_store import profile_update, stage, treated

NOW = datetime(2026, 11, 23, tzinfo=UTC)
NIGHT = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def test_preferences_tasks_outcomes_and_uplift(topics: LocalBroker, tmp_path: Path) -> None:
    settings = RuntimeSettings(kafka_bootstrap_servers=topics.bootstrap, home=tmp_path)
    url = settings.resolved_database_url
    db.upgrade(url)
    client = TestClient(load_api("notify", settings), headers=ADMIN)

    chosen = {"opted_out": ["sms"], "locale": "en", "time_zone": "Europe/London"}
    answer = client.put("/customers/C1/preferences", json=chosen)
    assert answer.status_code == 200 and answer.json()["opted_out"] == ["sms"]
    assert (
        client.put("/customers/C1/preferences", json={"time_zone": "Mars/Base"}).status_code == 422
    )
    malformed = client.put("/customers/C1/preferences", json={"locale": "en_GB"})
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"] == [
        "body",
        "locale",
    ]

    customer = treated("A")
    service.apply(url, stage(customer, Stage.AT_RISK, NIGHT, Tier.HNW), NotifyRules(), NOW)
    london_night = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)  # 22:00 in London: quiet hours
    service.apply(url, stage("C1", Stage.GROWTH, london_night), NotifyRules(), NOW)
    (note,) = client.get("/customers/C1/notifications").json()
    assert (note["status"], note["deferred"], note["channel"]) == ("scheduled", True, "push")

    (task,) = client.get("/rm/queue:branch-service/tasks").json()
    assert (task["customer_id"], task["priority"]) == (customer, "high")
    closed = client.post(f"/tasks/{task['task_id']}/outcome", json={"outcome": "retained"})
    assert closed.status_code == 200 and closed.json()[0]["status"] == "closed"
    assert client.post("/tasks/nope/outcome", json={"outcome": "lost"}).status_code == 404
    assert client.get("/tasks/summary").json()["outcomes"] == {"retained": 1}
    assert client.get("/interventions/uplift").json() == []  # no outcome known yet


def test_an_rm_sees_their_own_tasks_and_customers_only(topics: LocalBroker, tmp_path: Path) -> None:
    settings = RuntimeSettings(kafka_bootstrap_servers=topics.bootstrap, home=tmp_path)
    url = settings.resolved_database_url
    db.upgrade(url)
    rules = NotifyRules()
    mine, theirs = treated("M"), treated("T")
    for customer, rm in ((mine, "RM001"), (theirs, "RM002")):
        service.apply(url, profile_update(customer, rm_id=rm), rules, NOW)  # type: ignore[arg-type]
        service.apply(url, stage(customer, Stage.AT_RISK, NIGHT, Tier.HNW), rules, NOW)
    client = TestClient(load_api("notify", settings), headers=RM1)

    (task,) = client.get("/rm/RM001/tasks").json()
    assert task["customer_id"] == mine
    assert client.get("/rm/RM001/tasks?kind=retention_call").json() == [task]
    assert client.get("/rm/RM001/tasks?kind=corporate_lead").json() == []
    refused_kind = client.get("/rm/RM001/tasks?kind=birthday_card")
    assert refused_kind.status_code == 422 and "retention_call" in refused_kind.text
    assert client.get("/rm/RM002/tasks").status_code == 403
    assert client.get(f"/customers/{mine}/notifications").status_code == 200
    assert client.get(f"/customers/{theirs}/notifications").status_code == 403
    (other,) = client.get("/rm/RM002/tasks", headers=ADMIN).json()
    refused = client.post(f"/tasks/{other['task_id']}/outcome", json={"outcome": "retained"})
    assert refused.status_code == 403
    done = client.post(f"/tasks/{task['task_id']}/outcome", json={"outcome": "retained"})
    assert done.status_code == 200
    # Summaries are for ops; preferences are the customer's, through the channel.
    assert client.get("/tasks/summary").status_code == 403
    assert client.get("/tasks/summary", headers=OPS).status_code == 200
    assert client.put(f"/customers/{mine}/preferences", json={"locale": "en"}).status_code == 403
    assert (
        client.put(
            f"/customers/{mine}/preferences", json={"locale": "en"}, headers=CHANNEL
        ).status_code
        == 200
    )
