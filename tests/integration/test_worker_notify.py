"""The notify worker on the real broker: from a customer's profile and a stage change to the
customer's message and the RM's task on their topics, and webhook delivery.

It adds `customer.updated` records to the input topic, so it runs after test_worker_ingest, whose
counts assume it is the only producer so far (modules run in alphabetical order)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

from schemas.lifecycle import Stage, Tier
from schemas.topics import ACCOUNT_EVENTS, NOTIFICATIONS, RM_TASKS, STAGE_CHANGED
from services.notify import store
from services.notify.store import ProfileRow
from services.runtime import db
from services.runtime.broker import LocalBroker
from services.runtime.codec import encode
from tests.integration.stack import end_offsets, produce, records_since, service_env, worker
from tests.integration.test_notify_store import stage, treated
from tests.unit.notify.test_delivery import Receiver

AT = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai: no quiet hours


def wait_for(check, timeout: float = 120):  # type: ignore[no-untyped-def]
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
    env = {**service_env(topics, rapport_home), "DATABASE_URL": url}
    marks = {t: end_offsets(topics.bootstrap, t) for t in (NOTIFICATIONS.name, RM_TASKS.name)}

    with worker("notify", env, tmp_path):
        produce(
            topics.bootstrap,
            ACCOUNT_EVENTS.name,
            [profile_record(mass, locale="en"), profile_record(hnw, rm_id=f"RM-{run}")],
        )
        # Topics are not ordered with one another: the profiles first, then the stage changes.
        wait_for(lambda: _profiles(url, mass, hnw))
        produce(
            topics.bootstrap,
            STAGE_CHANGED.name,
            [
                (mass.encode(), encode(stage(mass, Stage.AT_RISK, AT))),
                (hnw.encode(), encode(stage(hnw, Stage.AT_RISK, AT, Tier.HNW))),
            ],
        )
        notifications = wait_for(
            lambda: [
                orjson.loads(r.value or b"{}")
                for r in records_since(
                    topics.bootstrap, NOTIFICATIONS.name, marks[NOTIFICATIONS.name]
                )
                if r.key == mass.encode()
            ]
        )
        tasks = wait_for(
            lambda: [
                orjson.loads(r.value or b"{}")
                for r in records_since(topics.bootstrap, RM_TASKS.name, marks[RM_TASKS.name])
                if orjson.loads(r.value or b"{}")["customer_id"] == hnw
            ]
        )
    (message,) = notifications
    assert (message["type"], message["template"], message["locale"]) == (
        "notification.scheduled",
        "retention_offer",
        "en",
    )
    assert "rate" in message["body"]
    (task,) = tasks
    assert (task["assignee"], task["priority"], task["kind"]) == (
        f"RM-{run}",
        "high",
        "retention_call",
    )


def profile_record(customer: str, **fields: object) -> tuple[bytes, bytes]:
    """A `customer.updated` record for the account events topic."""
    event = {
        "event_id": f"u-{customer}",
        "event_type": "customer.updated",
        "occurred_at": "2026-03-01T00:00:00Z",
        "customer_id": customer,
        "profile": fields,
    }
    return customer.encode(), orjson.dumps(event)


def _profiles(url: str, *customers: str) -> bool:
    with db.session_scope(url) as session:
        return all(session.get(ProfileRow, c) is not None for c in customers)


def test_webhook_delivery_records_sent_and_dead_letters_what_never_got_through(
    topics: LocalBroker, rapport_home: Path, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    app_user, sms_user = f"{run}-P", f"{run}-S"
    url = f"sqlite:///{tmp_path / 'notify.db'}"
    db.upgrade(url)
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
    profiles = [
        profile_record(app_user, consent={"push": True}),
        profile_record(sms_user, consent={"push": False, "sms": True}),
    ]
    try:
        with worker("notify", env, tmp_path):
            produce(topics.bootstrap, ACCOUNT_EVENTS.name, profiles)
            wait_for(lambda: _profiles(url, app_user, sms_user))
            produce(
                topics.bootstrap,
                STAGE_CHANGED.name,
                [(c.encode(), encode(stage(c, Stage.GROWTH, AT))) for c in (app_user, sms_user)],
            )
            statuses = wait_for(
                lambda: (
                    {
                        c: [n.status for n in store.notifications(url, c, 5)]
                        for c in (app_user, sms_user)
                    }
                    if all(
                        n.status in ("sent", "failed")
                        for c in (app_user, sms_user)
                        for n in store.notifications(url, c, 5)
                    )
                    and all(store.notifications(url, c, 5) for c in (app_user, sms_user))
                    else None
                )
            )
    finally:
        push.server.shutdown()
        sms.server.shutdown()
    assert statuses == {app_user: ["sent"], sms_user: ["failed"]}
    (failed,) = store.notifications(url, sms_user, 5)
    assert (failed.delivery_attempts, failed.delivery_error) == (2, "HTTP 503")
    dead = [
        d
        for d in records_since(topics.bootstrap, NOTIFICATIONS.dlq, dead_marks)
        if d.key == sms_user.encode()
    ]
    assert [d.headers["rapport-error-reason"] for d in dead] == [b"delivery_failed"]
