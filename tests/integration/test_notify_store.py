"""Notify's decisions kept in SQL, on both databases: profiles from core banking and from the
customer, caps and de-duplication across events, cancellation of deferred retention messages,
RM capacity, redelivery, outcomes and the uplift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from schemas import parse_account_event
from schemas.lifecycle import (
    ChurnCause,
    ChurnSignalChanged,
    SignalKind,
    Stage,
    StageChanged,
    Strategy,
    Tier,
)
from schemas.notify import Channel, NotificationChanged, RmTaskChanged
from schemas.rewards import EntryKind, LedgerEntryBooked
from services.notify import read_model, service, store
from services.notify.domain import NotifyRules, in_holdout
from services.notify.service import Preferences
from services.runtime import db

RULES = NotifyRules()
NOW = datetime(2026, 11, 23, tzinfo=UTC)
# 22:00 in Shanghai: inside quiet hours.
NIGHT = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


@pytest.fixture
def url(database_url: str) -> str:
    db.upgrade(database_url)
    return database_url


def treated(prefix: str) -> str:
    return next(f"{prefix}{n}" for n in range(1000) if not in_holdout(f"{prefix}{n}", 0.10))


def held_out(prefix: str) -> str:
    return next(f"{prefix}{n}" for n in range(1000) if in_holdout(f"{prefix}{n}", 0.10))


def stage(
    customer: str, to: Stage, at: datetime, tier: Tier = Tier.MASS, n: int = 0
) -> StageChanged:
    return StageChanged(
        event_id=f"s-{customer}-{to}-{n}",
        type="stage.changed",
        occurred_at=at,
        customer_id=customer,
        stage=to,
        tier=tier,
        reason="test",
        churn_score=0.7 if to is Stage.AT_RISK else 0.1,
        probable_cause=ChurnCause.COMPETITOR_ATTRACTION if to is Stage.AT_RISK else None,
        strategy=Strategy.for_stage(to),
        balance_avg_30d="100.00",
    )


def credit(customer: str, n: int, at: datetime) -> LedgerEntryBooked:
    return LedgerEntryBooked(
        event_id=f"e-{customer}-{n}",
        type="ledger_entry.booked",
        occurred_at=at,
        entry_id=f"e-{customer}-{n}",
        customer_id=customer,
        kind=EntryKind.CREDIT,
        points=100,
        rule="loyalty.anniversary",
        reason="x",
        source_event_id=f"m{n}",
        booked_at=at,
        points_balance=100 * (n + 1),
    )


def profile_update(customer: str, **profile: object) -> object:
    return parse_account_event(
        {
            "event_id": f"u-{customer}",
            "event_type": "customer.updated",
            "occurred_at": "2026-01-01T00:00:00Z",
            "customer_id": customer,
            "profile": profile,
        }
    )


def test_deferred_retention_message_is_cancelled_when_the_signal_resolves(url: str) -> None:
    customer = treated("M")
    service.apply(url, profile_update(customer, locale="en", time_zone="Asia/Shanghai"), RULES, NOW)  # type: ignore[arg-type]
    (message,) = service.apply(url, stage(customer, Stage.AT_RISK, NIGHT), RULES, NOW)
    assert isinstance(message, NotificationChanged) and message.deferred
    assert message.locale == "en" and message.template == "retention_offer"
    resolved = ChurnSignalChanged(
        event_id="r1",
        type="churn_signal.resolved",
        occurred_at=NIGHT + timedelta(hours=2),
        customer_id=customer,
        signal=SignalKind.COMPETITOR_TRANSFER,
        cause=ChurnCause.COMPETITOR_ATTRACTION,
        signal_weight=0.7,
        churn_score=0.1,
        stage=Stage.AT_RISK,
        tier=Tier.MASS,
        evidence={},
    )
    (cancelled,) = service.apply(url, resolved, RULES, NOW)
    assert isinstance(cancelled, NotificationChanged)
    assert (cancelled.type, cancelled.notification_id) == (
        "notification.cancelled",
        message.notification_id,
    )
    assert [n.status for n in read_model.notifications(url, customer, 10)] == ["cancelled"]


def resolution_of(customer: str, at: datetime) -> ChurnSignalChanged:
    return ChurnSignalChanged(
        event_id=f"resolved-{customer}-{at:%H%M}",
        type="churn_signal.resolved",
        occurred_at=at,
        customer_id=customer,
        signal=SignalKind.COMPETITOR_TRANSFER,
        cause=ChurnCause.COMPETITOR_ATTRACTION,
        signal_weight=0.7,
        churn_score=0.1,
        stage=Stage.AT_RISK,
        tier=Tier.MASS,
        evidence={},
    )


@pytest.mark.parametrize("resolution_first", [False, True])
@pytest.mark.parametrize(("resolved_after", "cancelled"), [(2, True), (-1, False), (12, False)])
def test_cancellation_depends_on_event_times_not_on_which_topic_came_first(
    url: str, resolution_first: bool, resolved_after: int, cancelled: bool
) -> None:
    """The stage change and the resolution come from two topics, in either order: a resolution
    after the message was triggered and before it goes out (8:00) cancels it, either way, with
    the same cancellation; one before the trigger or after the message went out does not."""
    customer = treated("M")
    service.apply(url, profile_update(customer, locale="en", time_zone="Asia/Shanghai"), RULES, NOW)  # type: ignore[arg-type]
    events: list[store.NotifyInput] = [
        stage(customer, Stage.AT_RISK, NIGHT),
        resolution_of(customer, NIGHT + timedelta(hours=resolved_after)),
    ]
    if resolution_first:
        events.reverse()
    outputs = [o for e in events for o in service.apply(url, e, RULES, NOW)]
    (message,) = [o for o in outputs if o.type == "notification.scheduled"]
    assert isinstance(message, NotificationChanged) and message.deferred
    cancellations = [o for o in outputs if o.type == "notification.cancelled"]
    if not cancelled:
        assert cancellations == []
        return
    (cancellation,) = cancellations
    assert cancellation.model_dump() == {
        **cancellation.model_dump(),
        "event_id": f"{message.notification_id}:cancelled",
        "occurred_at": NIGHT + timedelta(hours=resolved_after),
        "source_event_id": events[int(not resolution_first)].event_id,
    }
    assert [n.status for n in read_model.notifications(url, customer, 10)] == ["cancelled"]


def test_a_redelivered_event_gives_the_same_outputs_and_decides_nothing_new(url: str) -> None:
    event = stage("C1", Stage.GROWTH, NIGHT)
    first = service.apply(url, event, RULES, NOW)
    assert service.apply(url, event, RULES, NOW) == first
    assert len(read_model.notifications(url, "C1", 10)) == 1


def test_caps_and_opt_outs_hold_across_events(url: str) -> None:
    service.set_preferences(url, "C2", Preferences(opted_out=[Channel.PUSH]), NOW)
    day = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
    outputs = [
        service.apply(url, credit("C2", n, day + timedelta(minutes=n)), RULES, NOW)[0]
        for n in range(7)
    ]
    kinds = [(o.type, o.reason_code) for o in outputs if isinstance(o, NotificationChanged)]
    assert (
        kinds
        == [("notification.scheduled", None)] * 5 + [("notification.suppressed", "daily_cap")] * 2
    )
    assert {o.channel for o in outputs[:5] if isinstance(o, NotificationChanged)} == {Channel.SMS}


def test_hnw_tasks_go_to_the_rm_and_queue_past_capacity(url: str) -> None:
    rules = NotifyRules(rm_daily_capacity=2)
    customers = [treated(f"H{n}-") for n in range(3)]
    for c in customers:
        service.apply(url, profile_update(c, rm_id="RM1"), rules, NOW)  # type: ignore[arg-type]
    tasks = [
        service.apply(url, stage(c, Stage.AT_RISK, NIGHT, Tier.HNW), rules, NOW)[0]
        for c in customers
    ]
    assert [t.status for t in tasks if isinstance(t, RmTaskChanged)] == ["open", "open", "queued"]
    listed = read_model.tasks_of(url, "RM1", include_closed=False)
    assert [t.status for t in listed] == ["open", "open", "queued"]
    changed = service.record_outcome(url, listed[0].task_id, "retained", "kept the deposit", NOW)
    assert changed is not None
    closed, released = changed
    assert (closed.status, closed.outcome) == ("closed", "retained")
    assert (released.type, released.task_id) == ("rm_task.released", listed[2].task_id)
    summary = read_model.task_summary(url, NOW)
    assert summary.by_assignee["RM1"] == {"closed": 1, "open": 2}
    assert summary.outcomes == {"retained": 1}


def test_uplift_compares_treated_and_holdout_customers(url: str) -> None:
    treated_customer, holdout_customer = treated("U"), held_out("U")
    for c in (treated_customer, holdout_customer):
        service.apply(url, stage(c, Stage.AT_RISK, NIGHT), RULES, NOW)
    service.apply(
        url, stage(treated_customer, Stage.GROWTH, NIGHT + timedelta(days=20), n=1), RULES, NOW
    )
    service.apply(
        url, stage(holdout_customer, Stage.CHURNED, NIGHT + timedelta(days=40), n=1), RULES, NOW
    )
    (cell,) = read_model.uplift(url)
    assert (cell.tier, cell.cause) == ("mass", "competitor_attraction")
    assert (cell.treated, cell.treated_retention, cell.holdout, cell.holdout_retention) == (
        1,
        1.0,
        1,
        0.0,
    )
    assert cell.uplift == 1.0


def test_a_batch_decides_as_one_event_at_a_time_and_undoes_only_a_failed_event(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [stage(f"B{n}", Stage.GROWTH, NIGHT) for n in range(3)] + [
        credit("B0", 0, NIGHT + timedelta(days=1))
    ]
    decide = service._decide

    def failing_on_b1(profiles: object, event: object, rules: NotifyRules) -> object:
        outputs = decide(profiles, event, rules)  # type: ignore[arg-type]
        if getattr(event, "customer_id", None) == "B1":
            raise ValueError("a rule failed")
        return outputs

    monkeypatch.setattr(service, "_decide", failing_on_b1)
    results = service.apply_all(url, events, RULES, NOW)
    assert [isinstance(r, ValueError) for r in results] == [False, True, False, False]
    # B1's notification was undone with its event; the others are kept, and B1 is taken
    # afresh when it comes again.
    assert read_model.notifications(url, "B1", 10) == []
    assert len(read_model.notifications(url, "B0", 10)) == 2
    monkeypatch.setattr(service, "_decide", decide)
    again = service.apply_all(url, events, RULES, NOW)
    assert again[0] == results[0] and again[2:] == results[2:]
    assert isinstance(again[1], list) and len(read_model.notifications(url, "B1", 10)) == 1


def test_a_batch_taken_again_event_by_event_keeps_changes_to_rows_an_earlier_event_wrote(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken again with a savepoint per event, each event's rows are written before the next
    is decided: a resolution that cancels a message an earlier event of the batch made must
    still reach the stored row (plain rows inserted once would lose it)."""
    customer = treated("K")
    service.apply(url, profile_update(customer, locale="en", time_zone="Asia/Shanghai"), RULES, NOW)  # type: ignore[arg-type]
    events = [
        stage(customer, Stage.AT_RISK, NIGHT),
        resolution_of(customer, NIGHT + timedelta(hours=2)),
        stage("FAILS", Stage.GROWTH, NIGHT + timedelta(hours=3)),
    ]
    decide = service._decide

    def failing(profiles: object, event: object, rules: NotifyRules) -> object:
        if getattr(event, "customer_id", None) == "FAILS":
            raise ValueError("a rule failed")
        return decide(profiles, event, rules)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "_decide", failing)
    results = service.apply_all(url, events, RULES, NOW)  # type: ignore[arg-type]
    assert isinstance(results[2], ValueError)
    assert [o.type for o in results[1]] == ["notification.cancelled"]  # type: ignore[union-attr]
    assert [n.status for n in read_model.notifications(url, customer, 10)] == ["cancelled"]


def test_a_batch_decides_with_the_profile_changes_made_before_in_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Profiles are read once per batch and kept with the batch's own changes: a change earlier
    in the batch is in force for the events after it, and one undone with its failed event is
    not."""
    events = [
        profile_update("L1", locale="en"),
        stage("L1", Stage.GROWTH, NIGHT),
        profile_update("L2", locale="en"),
        stage("L2", Stage.GROWTH, NIGHT),
    ]
    results = service.apply_all(url, events, RULES, NOW)  # type: ignore[arg-type]
    locales = [o.locale for r in results if isinstance(r, list) for o in r]
    assert locales == ["en", "en"]
    update = service._update_profile

    def failing_on_l4(profiles: object, event: object) -> None:
        update(profiles, event)  # type: ignore[arg-type]
        if getattr(event, "customer_id", None) == "L4":
            raise ValueError("a rule failed")

    monkeypatch.setattr(service, "_update_profile", failing_on_l4)
    events = [
        profile_update("L3", locale="en"),
        profile_update("L4", locale="en"),
        stage("L4", Stage.GROWTH, NIGHT),
        stage("L3", Stage.GROWTH, NIGHT),
    ]
    results = service.apply_all(url, events, RULES, NOW)  # type: ignore[arg-type]
    assert isinstance(results[1], ValueError)
    (l4,), (l3,) = results[2], results[3]
    assert isinstance(l4, NotificationChanged) and isinstance(l3, NotificationChanged)
    assert (l4.locale, l3.locale) == (RULES.default_locale, "en")


def mixed_feed(customers: int) -> list[object]:
    """Profiles, welcomes in quiet hours, credits past the daily cap, customers turning at risk
    in each tier (tasks, interventions), resolutions that cancel, recoveries and losses that
    close interventions: in event-time order."""
    timed: list[tuple[datetime, object]] = []
    for n in range(customers):
        c = f"Q{n:05d}"
        t0 = NIGHT + timedelta(minutes=n)
        if n % 3 == 0:
            timed.append((t0 - timedelta(days=400), profile_update(c, locale="en")))
        timed.append((t0, stage(c, Stage.ACQUISITION, t0, Tier.MASS, 1)))
        for k in range(7 if n % 4 == 0 else 2):
            at = t0 + timedelta(days=1, minutes=k)
            timed.append((at, credit(c, k, at)))
        if n % 2 == 0:
            tier = (Tier.MASS, Tier.AFFLUENT, Tier.HNW)[n % 3]
            t1 = t0 + timedelta(days=30)
            timed.append((t1, stage(c, Stage.AT_RISK, t1, tier, 2)))
            if n % 4 == 0:
                timed.append((t1 + timedelta(hours=2), resolution_of(c, t1 + timedelta(hours=2))))
            t3 = t1 + timedelta(days=20)
            timed.append((t3, stage(c, Stage.GROWTH if n % 8 else Stage.DORMANT, t3, tier, 3)))
    return [event for _, event in sorted(timed, key=lambda pair: pair[0])]


def test_a_batch_decides_what_its_events_decide_one_at_a_time(
    database_url: str, tmp_path: object
) -> None:
    """A batch reads its customers' profiles, scheduled messages and open interventions once and
    keeps them with its own writes: it must decide exactly as the events taken one by one."""
    events = mixed_feed(80)

    def decided(batch: int) -> tuple[list[object], object]:
        url = database_url
        if url.startswith("sqlite"):
            url = f"sqlite:///{tmp_path}/batch-{batch}.db"
        else:
            with db.get_engine(url).begin() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
        db.upgrade(url)
        outputs: list[object] = []
        for i in range(0, len(events), batch):
            results = service.apply_all(url, events[i : i + batch], RULES, NOW)  # type: ignore[arg-type]
            for result in results:
                assert isinstance(result, list), result
                outputs += result
        return outputs, read_model.uplift(url)

    one_by_one = decided(1)
    kinds = {(o.type, getattr(o, "reason_code", None)) for o in one_by_one[0]}  # type: ignore[attr-defined]
    assert {("notification.suppressed", "daily_cap"), ("rm_task.created", None)} <= kinds
    assert ("notification.cancelled", "signal_resolved") in kinds
    assert decided(500) == one_by_one
