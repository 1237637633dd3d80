"""Migrations and sessions on both databases Rapport supports: the SQLite file and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text

from schemas.lifecycle import (
    ChurnCause,
    ChurnSignalChanged,
    SignalKind,
    Stage,
    StageChanged,
    Tier,
)
from schemas.notify import Priority, RmTaskChanged
from services.lifecycle import history
from services.notify import read_model, service, store
from services.runtime import db
from services.runtime.auth import assigned_rm
from services.runtime.codec import encode
from tests.integration.test_notify_store import stage


def test_fresh_database_is_not_ready_until_migrated(database_url: str) -> None:
    problem = db.check_ready(database_url)
    assert problem is not None and "rapport db upgrade" in problem
    db.upgrade(database_url)
    assert db.check_ready(database_url) is None
    assert db.current_revision(database_url) == db.head_revision(database_url)


def test_migrations_create_the_baseline_and_are_repeatable(database_url: str) -> None:
    db.upgrade(database_url)
    db.upgrade(database_url)  # a second run changes nothing
    tables = inspect(db.get_engine(database_url)).get_table_names()
    assert "rapport_installation" in tables


def test_session_commits_at_the_boundary_and_rolls_back_on_error(database_url: str) -> None:
    db.upgrade(database_url)
    insert = text("INSERT INTO rapport_installation (key, value) VALUES (:k, 'v')")
    with db.session_scope(database_url) as session:
        session.execute(insert, {"k": "kept"})
    with pytest.raises(RuntimeError), db.session_scope(database_url) as session:
        session.execute(insert, {"k": "rolled-back"})
        raise RuntimeError("boom")
    with db.session_scope(database_url) as session:
        keys = set(session.execute(text("SELECT key FROM rapport_installation")).scalars())
    assert "kept" in keys and "rolled-back" not in keys


def test_among_selects_as_an_in_list_does(database_url: str) -> None:
    """`db.among` (one array parameter on PostgreSQL, an IN list elsewhere) picks the same
    rows as `IN`, with no value, one, and more than a batch has."""
    db.upgrade(database_url)
    table = history.LifecycleHistoryRow.__table__  # type: ignore[attr-defined]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {"event_id": f"e{n}", "customer_id": f"C{n:04d}", "type": "stage.changed"}
        | {"occurred_at": at, "stage": "growth", "tier": "mass", "churn_score": 0.0}
        for n in range(10)
    ]
    many = [f"C{n:04d}" for n in range(1200)]
    with db.session_scope(database_url) as session:
        session.execute(table.insert(), rows)
        for values in ([], ["C0001"], many, ["C0001", "nobody", "C0007"]):
            among = session.execute(
                select(table.c.customer_id).where(db.among(session, table.c.customer_id, values))
            ).scalars()
            listed = session.execute(
                select(table.c.customer_id).where(table.c.customer_id.in_(values))
            ).scalars()
            assert sorted(among) == sorted(listed)


def test_insert_rows_stores_every_kind_of_value_as_an_insert_does(database_url: str) -> None:
    """`db.insert_rows` (COPY on PostgreSQL): text, times with their zone, bytes, JSON,
    booleans and nulls read back as they were given."""
    db.upgrade(database_url)
    at = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    changes = [
        {"event_id": "p1", "customer_id": "C1", "effective_at": at, "fields": {"locale": "en"}},
        {"event_id": "p2", "customer_id": "C1", "effective_at": at, "fields": {"consent": {}}},
    ]
    sources = [{"event_id": "s1", "outputs": b'["\\x00\t\n"]', "processed_at": at}]
    interventions = [
        {"customer_id": "C1", "at": at, "tier": "mass", "cause": "fees", "treated": True}
        | {"outcome": None, "outcome_at": None},
        {"customer_id": "C2", "at": at, "tier": "hnw", "cause": "fees", "treated": False}
        | {"outcome": "lost", "outcome_at": at + timedelta(days=3)},
    ]
    tables = [
        (store.ProfileChangeRow, changes),
        (store.NotifySourceRow, sources),
        (store.InterventionRow, interventions),
    ]
    with db.session_scope(database_url) as session:
        for model, rows in tables:
            db.insert_rows(session, model.__table__, [dict(row) for row in rows])  # type: ignore[attr-defined]
    with db.session_scope(database_url) as session:
        for model, rows in tables:
            table = model.__table__  # type: ignore[attr-defined]
            stored = [dict(r._mapping) for r in session.execute(select(table)).all()]
            for row in stored:
                for name, value in row.items():
                    if isinstance(value, datetime):
                        row[name] = db.as_utc(value)
            expected = [{c.name: row.get(c.name) for c in table.columns} for row in rows]
            key = next(iter(expected[0]))
            assert sorted(stored, key=lambda r: r[key]) == sorted(expected, key=lambda r: r[key])


def test_unreachable_database_is_reported_not_raised() -> None:
    problem = db.check_ready("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    assert problem is not None and problem.startswith("database unreachable")


def test_notify_profiles_survive_the_move_to_a_history_of_changes(database_url: str) -> None:
    """Revision 0007 turns each stored profile into one change in force from the start."""
    db.upgrade(database_url, "0006")
    with db.session_scope(database_url) as session:
        session.execute(
            text(
                "INSERT INTO notify_profiles (customer_id, profile, updated_at) "
                "VALUES ('C9', :profile, :at)"
            ),
            {
                "profile": '{"customer_id": "C9", "locale": "en", "rm_id": "RM3", '
                '"consent": {"sms": false}, "opted_out": ["email"]}',
                "at": datetime(2027, 5, 1, tzinfo=UTC),
            },
        )
    db.upgrade(database_url)
    assert "notify_profiles" not in inspect(db.get_engine(database_url)).get_table_names()
    now = datetime(2026, 12, 1, tzinfo=UTC)
    profile = service.set_preferences(
        database_url, "C9", service.Preferences(time_zone="Europe/London"), now - timedelta(days=1)
    )
    assert (profile.locale, profile.rm_id, profile.time_zone) == ("en", "RM3", "Europe/London")
    assert profile.consent == {"sms": False} and profile.opted_out == []

    async def directory() -> str | None:
        return await assigned_rm(database_url)("C9")

    assert asyncio.run(directory()) == "RM3"


def test_tasks_stored_before_their_kind_was_get_it_and_filter_by_it(database_url: str) -> None:
    """Revision 0010 fills the kind of the tasks stored before 0009 from their stored event;
    an RM's worklist filtered by kind shows them."""
    db.upgrade(database_url, "0008")
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    for task_id, kind in (("T-retain", "retention_call"), ("T-lead", "introduction_request")):
        task = RmTaskChanged(
            event_id=f"{task_id}:created",
            type="rm_task.created",
            occurred_at=at,
            task_id=task_id,
            kind=kind,
            customer_id="C1",
            assignee="RM1",
            priority=Priority.HIGH,
            due_at=at + timedelta(days=2),
            status="open",
            summary="a task stored before tasks kept their kind",
            source_event_id="E1",
        )
        with db.session_scope(database_url) as session:
            session.execute(
                text(
                    "INSERT INTO notify_tasks (task_id, assignee, customer_id, status, priority,"
                    " created_at, due_at, task) VALUES (:task_id, 'RM1', 'C1', 'open', 'high',"
                    " :at, :due, :task)"
                ),
                {"task_id": task_id, "at": at, "due": task.due_at, "task": encode(task)},
            )
    db.upgrade(database_url)
    retention = read_model.tasks_of(database_url, "RM1", False, kind="retention_call")
    assert [t.task_id for t in retention] == ["T-retain"]
    assert {t.task_id for t in read_model.tasks_of(database_url, "RM1", False)} == {
        "T-retain",
        "T-lead",
    }


def test_lifecycle_history_stores_each_event_once_and_counts_stages_by_month(
    database_url: str,
) -> None:
    db.upgrade(database_url)
    events: list[StageChanged | ChurnSignalChanged] = [
        stage("C1", Stage.ACQUISITION, datetime(2026, 1, 10, 9, tzinfo=UTC)),
        stage("C1", Stage.GROWTH, datetime(2026, 2, 3, 9, tzinfo=UTC)),
        stage("C2", Stage.ACQUISITION, datetime(2026, 2, 20, 9, tzinfo=UTC), Tier.AFFLUENT),
        ChurnSignalChanged(
            event_id="C1-3",
            type="churn_signal.raised",
            occurred_at=datetime(2026, 3, 31, 23, 0, tzinfo=UTC),
            customer_id="C1",
            signal=SignalKind.INACTIVITY,
            cause=ChurnCause.DISENGAGEMENT,
            signal_weight=0.5,
            churn_score=0.5,
            stage=Stage.GROWTH,
            tier=Tier.MASS,
            evidence={"days_quiet": 46},
            explanation={"en": "no own transaction for 46 days"},
        ),
        stage("C1", Stage.AT_RISK, datetime(2026, 4, 1, tzinfo=UTC)),
    ]
    rows = [history.history_row(e) for e in events]
    history.write(database_url, rows)
    history.write(database_url, rows[1:])  # taken again after a crash: nothing doubles

    entries = history.of_customer(database_url, "C1")
    # C1's events, newest first.
    assert [e.event_id for e in entries] == [
        e.event_id for e in reversed(events) if e.customer_id == "C1"
    ]
    assert entries[1].evidence == {"days_quiet": 46}
    assert entries[1].explanation == {"en": "no own transaction for 46 days"}
    assert entries[0].occurred_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert history.of_customer(database_url, "C1", limit=1)[0].stage is Stage.AT_RISK

    months = history.monthly(database_url, 4)
    assert [m.month for m in months] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    cells = [
        {
            (s.value, t.value): n
            for s, row in m.by_stage_and_tier.items()
            for t, n in row.items()
            if n
        }
        for m in months
    ]
    assert cells == [
        {("acquisition", "mass"): 1},
        {("growth", "mass"): 1, ("acquisition", "affluent"): 1},
        {("growth", "mass"): 1, ("acquisition", "affluent"): 1},  # a signal is not a change
        {("at_risk", "mass"): 1, ("acquisition", "affluent"): 1},
    ]
    assert [m.customers for m in months] == [1, 2, 2, 2]
