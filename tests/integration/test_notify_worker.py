"""The notify worker on the real broker: from a stage change to the customer's message and the
RM's task on their topics, and webhook delivery.

Customers' choices are set through the store (as `PUT /customers/{id}/preferences` does), not
with `customer.updated` records: this module runs before test_worker_ingest, whose counts assume
it is the first to produce account events, and while the shared topics are still short."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson

from schemas.lifecycle import Stage, Tier
from schemas.notify import Channel
from schemas.topics import NOTIFICATIONS, RM_TASKS, STAGE_CHANGED
from services.notify import read_model, service
from services.notify.service import Preferences
from services.runtime import db
from services.runtime.broker import LocalBroker
from services.runtime.codec import encode
from tests.integration.stack import (
    end_offsets,
    produce,
    produce_with_headers,
    prometheus,
    records_since,
    service_env,
    worker,
)
from tests.integration.test_notify_store import stage, treated
from tests.unit.notify.test_delivery import Receiver

AT = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai: no quiet hours
NOW = datetime(2026, 11, 23, tzinfo=UTC)
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 120) -> T:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return found


def test_at_risk_customers_get_a_message_or_an_rm_task_by_tier(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    mass, hnw = treated(f"{run}-M"), treated(f"{run}-H")
    url = f"sqlite:///{tmp_path / 'notify.db'}"
    db.upgrade(url)
    service.set_preferences(url, mass, Preferences(locale="en"), NOW)
    env = {**service_env(topics, rapport_home), "DATABASE_URL": url}
    marks = {t: end_offsets(topics.bootstrap, t) for t in (NOTIFICATIONS.name, RM_TASKS.name)}

    def on(topic: str, match: Callable[[dict[str, object]], bool]) -> list[dict[str, object]]:
        found = [
            orjson.loads(r.value or b"{}")
            for r in records_since(topics.bootstrap, topic, marks[topic])
        ]
        return [f for f in found if match(f)]

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace}-00f067aa0ba902b7-01".encode()
    with worker("notify", env, tmp_path) as running:
        produce_with_headers(
            topics.bootstrap,
            STAGE_CHANGED.name,
            [
                (
                    mass.encode(),
                    encode(stage(mass, Stage.AT_RISK, AT)),
                    [("traceparent", traceparent)],
                ),
                (hnw.encode(), encode(stage(hnw, Stage.AT_RISK, AT, Tier.HNW)), []),
            ],
        )
        notifications = wait_for(lambda: on(NOTIFICATIONS.name, lambda n: n["customer_id"] == mass))
        tasks = wait_for(lambda: on(RM_TASKS.name, lambda t: t["customer_id"] == hnw))
        # What Prometheus scrapes counts them as the worker does.
        with prometheus([running], tmp_path) as server:
            for promql, name, labels in (
                (
                    'sum(rapport_notify_notifications_total{outcome="scheduled"})',
                    "rapport_notify_notifications_total",
                    {"outcome": "scheduled"},
                ),
                (
                    'sum(rapport_notify_rm_tasks_total{change="created",kind="retention_call"})',
                    "rapport_notify_rm_tasks_total",
                    {"change": "created", "kind": "retention_call"},
                ),
            ):
                counted = running.total(name, **labels)
                assert counted >= 1
                assert server.wait_for(promql, at_least=counted) == counted
    # The notification continues the stage change's trace.
    (sent,) = [
        r
        for r in records_since(topics.bootstrap, NOTIFICATIONS.name, marks[NOTIFICATIONS.name])
        if r.key == mass.encode()
    ]
    assert sent.headers["traceparent"].decode().split("-")[1] == trace
    # The worker logs JSON lines naming its service.
    logged = [
        orjson.loads(line) for line in running.log.read_text().splitlines() if line.startswith("{")
    ]
    assert logged and all(entry["service"] == "notify" for entry in logged)
    (message,) = notifications
    assert (message["type"], message["template"], message["locale"]) == (
        "notification.scheduled",
        "retention_offer",
        "en",
    )
    assert "rate" in str(message["body"])
    (task,) = tasks
    # No RM in the profile: the team queue takes it.
    assert (task["assignee"], task["priority"], task["kind"]) == (
        "queue:branch-service",
        "high",
        "retention_call",
    )
    assert on(NOTIFICATIONS.name, lambda n: n["customer_id"] == hnw) == []


def test_webhook_delivery_records_sent_and_dead_letters_what_never_got_through(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    app_user, sms_user = f"{run}-P", f"{run}-S"
    url = f"sqlite:///{tmp_path / 'notify.db'}"
    db.upgrade(url)
    service.set_preferences(url, sms_user, Preferences(opted_out=[Channel.PUSH]), NOW)
    push, sms = Receiver([200]), Receiver([503])
    env = {
        **service_env(topics, rapport_home),
        "DATABASE_URL": url,
        "RAPPORT_NOTIFY_WEBHOOK_PUSH_URL": push.url,
        "RAPPORT_NOTIFY_WEBHOOK_SMS_URL": sms.url,
        "RAPPORT_NOTIFY_WEBHOOK_SECRET": "s3cret",
        "RAPPORT_NOTIFY_WEBHOOK_ATTEMPTS": "2",
        "RAPPORT_NOTIFY_WEBHOOK_BACKOFF_SECONDS": "0.05",
    }
    dead_marks = end_offsets(topics.bootstrap, NOTIFICATIONS.dlq)

    def delivered() -> dict[str, list[str]] | None:
        found = {c: read_model.notifications(url, c, 5) for c in (app_user, sms_user)}
        if not all(found.values()) or any(
            n.status == "scheduled" for views in found.values() for n in views
        ):
            return None
        return {c: [n.status for n in views] for c, views in found.items()}

    try:
        with worker("notify", env, tmp_path):
            produce(
                topics.bootstrap,
                STAGE_CHANGED.name,
                [(c.encode(), encode(stage(c, Stage.GROWTH, AT))) for c in (app_user, sms_user)],
            )
            statuses = wait_for(delivered)
    finally:
        push.server.shutdown()
        sms.server.shutdown()
    assert statuses == {app_user: ["sent"], sms_user: ["failed"]}
    (failed,) = read_model.notifications(url, sms_user, 5)
    assert (failed.delivery_attempts, failed.delivery_error) == (2, "HTTP 503")
    dead = [
        d
        for d in records_since(topics.bootstrap, NOTIFICATIONS.dlq, dead_marks)
        if d.key == sms_user.encode()
    ]
    assert [d.headers["rapport-error-reason"] for d in dead] == [b"delivery_failed"]
