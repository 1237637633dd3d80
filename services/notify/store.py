"""Notify's state in SQL: customer profiles, the notifications and tasks it decided, the
interventions it measures, and the events it has taken (with the outputs each gave, so that a
redelivered event re-sends the same outputs instead of deciding again).

Every decision runs in one serialised transaction (`db.serialised_session`): caps,
de-duplication and RM capacity count what was decided before, whichever worker decided it."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, LargeBinary, func
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Column, Field, Session, SQLModel, col, select

from schemas.account_events import AccountEvent, CustomerUpdated, Locale, TimeZone
from schemas.lifecycle import (
    ChurnSignalChanged,
    CustomerBirthday,
    Stage,
    StageChanged,
    TenureAnniversary,
)
from schemas.notify import Category, Channel, NotificationChanged, RmTaskChanged
from schemas.referral import LeadChanged, ReferralChanged
from schemas.rewards import LedgerEntryBooked
from services.notify.domain import (
    Decision,
    NotifyRules,
    Profile,
    ProfileChange,
    Sent,
    on_anniversary,
    on_birthday,
    on_churn_signal,
    on_lead,
    on_ledger_entry,
    on_referral,
    on_stage_changed,
    profile_as_of,
    profiles_read,
    resolved_in_wait,
    schedule,
    task_created,
    within_lead_budget,
)
from services.runtime import db
from services.runtime.codec import encode

log = logging.getLogger(__name__)
_TIME = DateTime(timezone=True)
_LOCK = "rapport-notify"
RETAINED_STAGES = (Stage.ACQUISITION, Stage.GROWTH, Stage.MATURITY)
LOST_STAGES = (Stage.DORMANT, Stage.CHURNED)
# Caps and de-duplication count the messages scheduled this long either side of a message.
HISTORY_WINDOW = timedelta(days=2)

# The other services' events notify decides on.
DERIVED = (
    StageChanged,
    ChurnSignalChanged,
    TenureAnniversary,
    CustomerBirthday,
    LeadChanged,
    ReferralChanged,
    LedgerEntryBooked,
)
NotifyInput = (
    AccountEvent
    | StageChanged
    | ChurnSignalChanged
    | TenureAnniversary
    | CustomerBirthday
    | LeadChanged
    | ReferralChanged
    | LedgerEntryBooked
)
Output = NotificationChanged | RmTaskChanged


class ProfileChangeRow(SQLModel, table=True):
    """What notify learnt of a customer, from which event, in force from when: the profile at
    any moment is folded from these (`profile_as_of`)."""

    __tablename__ = "notify_profile_changes"

    event_id: str = Field(primary_key=True, max_length=128)
    customer_id: str = Field(index=True, max_length=64)
    effective_at: datetime = Field(sa_type=_TIME)
    fields: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class NotificationRow(SQLModel, table=True):
    __tablename__ = "notify_notifications"

    notification_id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    category: str = Field(max_length=16)
    template: str = Field(max_length=40)
    # The locale of the template's text (revision 0008; null for earlier rows).
    template_locale: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=8)
    dedupe_key: str = Field(max_length=128)
    cause: str | None = Field(default=None, max_length=40)
    status: str = Field(max_length=16)
    reason_code: str | None = Field(default=None, max_length=40)
    occurred_at: datetime = Field(sa_type=_TIME)
    send_at: datetime | None = Field(default=None, sa_type=_TIME)
    source_event_id: str = Field(max_length=128)
    delivery_attempts: int | None = None
    delivery_error: str | None = Field(default=None, max_length=300)


class TaskRow(SQLModel, table=True):
    __tablename__ = "notify_tasks"

    task_id: str = Field(primary_key=True, max_length=64)
    assignee: str = Field(index=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    status: str = Field(max_length=16)
    priority: str = Field(max_length=8)
    # retention_call, introduction_request, corporate_lead (migration 0010 filled the older).
    kind: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(sa_type=_TIME)
    due_at: datetime = Field(sa_type=_TIME)
    outcome: str | None = Field(default=None, max_length=16)
    task: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the latest event


class InterventionRow(SQLModel, table=True):
    __tablename__ = "notify_interventions"

    customer_id: str = Field(primary_key=True, max_length=64)
    at: datetime = Field(primary_key=True, sa_type=_TIME)
    tier: str = Field(max_length=16)
    cause: str = Field(max_length=40)
    treated: bool
    outcome: str | None = Field(default=None, max_length=16)
    outcome_at: datetime | None = Field(default=None, sa_type=_TIME)


class ResolutionRow(SQLModel, table=True):
    """A churn signal's resolution, kept for the retention messages taken after it."""

    __tablename__ = "notify_resolutions"

    event_id: str = Field(primary_key=True, max_length=128)
    cause: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(index=True, max_length=64)
    signal: str = Field(max_length=40)
    resolved_at: datetime = Field(sa_type=_TIME)


class NotifySourceRow(SQLModel, table=True):
    __tablename__ = "notify_source_events"

    event_id: str = Field(primary_key=True, max_length=128)
    outputs: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    processed_at: datetime = Field(sa_type=_TIME)


# In force for every decision, whatever its event time: the customer's own choices apply to
# whatever is decided after they were made (and a core-banking change dated later overrides
# the locale or time zone chosen).
ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)


class _Reads:
    """What a transaction's decisions read, each customer's read once (a batch's customers in one
    query each) and kept with what the transaction writes: profile changes, the scheduled
    notifications that caps and de-duplication count, and who has an intervention open. A
    stage change had read its customer's profile twice and its history once, and each query
    flushed the writes before it one statement at a time. The notification rows are the
    session's own objects: a cancellation made in the transaction shows in them."""

    def __init__(self, session: Session, since: datetime, customer_ids: Iterable[str] = ()) -> None:
        self.session = session
        # The earliest a message of the transaction counts from: caps and de-duplication look
        # two days either side of a message, dated at its event.
        self.since = since - HISTORY_WINDOW
        self.changes: dict[str, list[ProfileChange]] = {}
        self.scheduled: dict[str, list[NotificationRow]] = {}
        self.intervened: set[str] = set()
        self._load(set(customer_ids))

    def _load(self, customer_ids: set[str]) -> None:
        if not customer_ids:
            return
        for customer_id in customer_ids:
            self.changes[customer_id], self.scheduled[customer_id] = [], []
        # Columns, not rows: a customer's changes grow with every stage change, and building
        # an ORM object for each had been a sixth of the worker's time.
        for customer_id, effective_at, event_id, fields in self.session.exec(
            select(
                ProfileChangeRow.customer_id,
                ProfileChangeRow.effective_at,
                ProfileChangeRow.event_id,
                ProfileChangeRow.fields,
            ).where(col(ProfileChangeRow.customer_id).in_(customer_ids))
        ):
            self.changes[customer_id].append(
                ProfileChange(db.as_utc(effective_at), event_id, dict(fields))
            )
        for row in self.session.exec(
            select(NotificationRow).where(
                col(NotificationRow.customer_id).in_(customer_ids),
                NotificationRow.status == "scheduled",
                col(NotificationRow.send_at) >= self.since,
            )
        ):
            self.scheduled[row.customer_id].append(row)
        self.intervened |= set(
            self.session.exec(
                select(InterventionRow.customer_id).where(
                    col(InterventionRow.customer_id).in_(customer_ids),
                    col(InterventionRow.outcome).is_(None),
                )
            )
        )

    def _known(self, customer_id: str) -> None:
        if customer_id not in self.changes:
            self._load({customer_id})

    def as_of(self, customer_id: str, at: datetime) -> Profile | None:
        self._known(customer_id)
        return profile_as_of(customer_id, self.changes[customer_id], at)

    def profile(self, customer_id: str, at: datetime) -> Profile:
        return self.as_of(customer_id, at) or Profile(customer_id=customer_id)

    def change(self, customer_id: str, at: datetime, event_id: str, fields: dict[str, Any]) -> None:
        self._known(customer_id)
        self.changes[customer_id].append(ProfileChange(at, event_id, fields))
        self.session.add(
            ProfileChangeRow(
                event_id=event_id, customer_id=customer_id, effective_at=at, fields=fields
            )
        )

    def sent_around(self, customer_id: str, at: datetime) -> list[Sent]:
        """The customer's scheduled messages within the history window of `at`."""
        self._known(customer_id)
        return [
            Sent(Category(row.category), row.dedupe_key, send_at)
            for row in self.scheduled[customer_id]
            if row.status == "scheduled"
            and row.send_at is not None
            and at - HISTORY_WINDOW <= (send_at := db.as_utc(row.send_at)) <= at + HISTORY_WINDOW
        ]

    def add_notification(self, row: NotificationRow) -> None:
        self._known(row.customer_id)
        self.scheduled[row.customer_id].append(row)
        self.session.add(row)

    def has_open_intervention(self, customer_id: str) -> bool:
        self._known(customer_id)
        return customer_id in self.intervened

    def add_intervention(self, row: InterventionRow) -> None:
        self.intervened.add(row.customer_id)
        self.session.add(row)


def _customers_read(events: list[NotifyInput]) -> set[str]:
    """Whose profiles deciding these events reads or changes."""
    found: set[str] = set()
    for event in events:
        if isinstance(event, CustomerUpdated):
            found.add(event.customer_id)
        elif isinstance(event, DERIVED):
            found |= {customer_id for customer_id, _ in profiles_read(event)}
    return found


def apply(url: str, event: NotifyInput, rules: NotifyRules, now: datetime) -> list[Output]:
    """Take one event; returns its outputs, the same ones again for an event taken before."""
    (result,) = apply_all(url, [event], rules, now)
    if isinstance(result, Exception):
        raise result
    return result


def apply_all(
    url: str, events: list[NotifyInput], rules: NotifyRules, now: datetime
) -> list[list[Output] | Exception]:
    """Take events in order in one transaction (one commit for a batch, not one per event);
    returns, for each, its outputs, or the exception its rules failed on (its changes are
    undone, the others' kept). A database failure fails the whole call.

    The batch is first taken whole; only when an event's rules fail is it rolled back and
    taken again with a savepoint per event. A savepoint costs two round trips per event, which
    had been a third of the worker's time on PostgreSQL, for failures that almost never come."""
    since = min((event.occurred_at for event in events), default=now)
    try:
        with db.serialised_session(url, _LOCK) as session:
            known = _known(session, events)
            reads = _Reads(session, since, _customers_read(events))
            return [_take(session, reads, event, rules, now, known) for event in events]
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.warning("an event of a batch of %d failed; taking it again event by event", len(events))
    results: list[list[Output] | Exception] = []
    with db.serialised_session(url, _LOCK) as session:
        known = _known(session, events)
        reads = _Reads(session, since, _customers_read(events))
        for event in events:
            taken_before = event.event_id in known
            try:
                with session.begin_nested():
                    results.append(_take(session, reads, event, rules, now, known))
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                results.append(exc)
                if not taken_before:
                    known.pop(event.event_id, None)
                # What the event wrote was rolled back with it: read afresh.
                reads = _Reads(session, since)
    return results


def _take(
    session: Session,
    reads: _Reads,
    event: NotifyInput,
    rules: NotifyRules,
    now: datetime,
    known: dict[str, bytes],
) -> list[Output]:
    """`known`: the stored outputs of the events already taken, by event id (read for the whole
    batch at once, and added to as events are taken)."""
    if (stored := known.get(event.event_id)) is not None:
        return [_decode_output(raw) for raw in orjson.loads(stored)]
    outputs = _decide(session, reads, event, rules)
    stored = orjson.dumps([encode(o).decode() for o in outputs])
    session.add(NotifySourceRow(event_id=event.event_id, outputs=stored, processed_at=now))
    known[event.event_id] = stored
    return outputs


def _known(session: Session, events: list[NotifyInput]) -> dict[str, bytes]:
    ids = list({event.event_id for event in events})
    rows = session.exec(select(NotifySourceRow).where(col(NotifySourceRow.event_id).in_(ids)))
    return {row.event_id: row.outputs for row in rows}


def _decode_output(raw: str) -> Output:
    data = orjson.loads(raw)
    if str(data["type"]).startswith("rm_task."):
        return RmTaskChanged.model_validate(data)
    return NotificationChanged.model_validate(data)


def _decide(
    session: Session, reads: _Reads, event: NotifyInput, rules: NotifyRules
) -> list[Output]:
    if isinstance(event, CustomerUpdated):
        _update_profile(reads, event)
        return []
    decision = Decision()
    if isinstance(event, StageChanged):
        stage = {"tier": event.tier.value, "stage": event.stage.value}
        reads.change(event.customer_id, event.occurred_at, event.event_id, stage)
        if reads.has_open_intervention(event.customer_id):
            _close_interventions(session, event)
        profile = reads.profile(event.customer_id, event.occurred_at)
        decision = on_stage_changed(profile, event, rules)
    elif isinstance(event, ChurnSignalChanged):
        return _cancel(session, event, on_churn_signal(event).cancel_causes)
    elif isinstance(event, LeadChanged):
        referrer = reads.as_of(event.suggested_referrer, event.occurred_at)
        decision = on_lead(event, referrer, rules)
    elif isinstance(event, ReferralChanged):
        decision = on_referral(event)
    elif isinstance(event, LedgerEntryBooked):
        decision = on_ledger_entry(event)
    elif isinstance(event, TenureAnniversary):
        decision = on_anniversary(event)
    elif isinstance(event, CustomerBirthday):
        decision = on_birthday(event)
    return _record(session, reads, decision, event.event_id, rules)


def _update_profile(reads: _Reads, event: CustomerUpdated) -> None:
    given = event.profile
    fields: dict[str, Any] = {
        name: value
        for name in ("locale", "time_zone", "rm_id")
        if (value := getattr(given, name)) is not None
    }
    if given.consent is not None:
        stated = {c.value: getattr(given.consent, c.value) for c in Channel}
        fields["consent"] = {channel: v for channel, v in stated.items() if v is not None}
    if fields:
        reads.change(event.customer_id, event.occurred_at, event.event_id, fields)


def _record(
    session: Session,
    reads: _Reads,
    decision: Decision,
    source_event_id: str,
    rules: NotifyRules,
) -> list[Output]:
    outputs: list[Output] = []
    for message in decision.messages:
        profile = reads.profile(message.customer_id, message.at)
        history = reads.sent_around(message.customer_id, message.at)
        out = schedule(message, profile, history, rules, source_event_id)
        row = NotificationRow(
            notification_id=out.notification_id,
            customer_id=out.customer_id,
            category=out.category.value,
            template=out.template,
            template_locale=out.template_locale,
            channel=out.channel.value if out.channel else None,
            dedupe_key=out.dedupe_key,
            cause=message.cause,
            status=out.type.split(".", 1)[1],
            reason_code=out.reason_code,
            occurred_at=out.occurred_at,
            send_at=out.send_at,
            source_event_id=source_event_id,
        )
        reads.add_notification(row)
        outputs += [out, *_cancel_if_resolved(session, row)]
    for task in decision.tasks:
        day = task.at.replace(hour=0, minute=0, second=0, microsecond=0)
        assigned_today = session.exec(
            select(func.count())
            .select_from(TaskRow)
            .where(
                TaskRow.assignee == task.assignee,
                col(TaskRow.created_at) >= day,
                col(TaskRow.created_at) < day + timedelta(days=1),
                TaskRow.status == "open",
            )
        ).one()
        created = task_created(task, int(assigned_today), rules, source_event_id)
        session.add(
            TaskRow(
                task_id=created.task_id,
                kind=created.kind,
                assignee=created.assignee,
                customer_id=created.customer_id,
                status=created.status,
                priority=created.priority.value,
                created_at=created.occurred_at,
                due_at=created.due_at,
                task=encode(created),
            )
        )
        outputs.append(created)
    if decision.intervention is not None:
        i = decision.intervention
        if session.get(InterventionRow, (i.customer_id, i.at)) is None:
            reads.add_intervention(
                InterventionRow(
                    customer_id=i.customer_id,
                    at=i.at,
                    tier=i.tier,
                    cause=i.cause,
                    treated=i.treated,
                )
            )
    return outputs


def _cancel(session: Session, event: ChurnSignalChanged, causes: list[str]) -> list[Output]:
    outputs: list[Output] = []
    for cause in causes:
        resolution = ResolutionRow(
            event_id=event.event_id,
            cause=cause,
            customer_id=event.customer_id,
            signal=event.signal.value,
            resolved_at=event.occurred_at,
        )
        session.add(resolution)
        waiting = session.exec(
            select(NotificationRow).where(
                NotificationRow.customer_id == event.customer_id,
                # "sent": handed to a webhook sender that holds it until send_at.
                col(NotificationRow.status).in_(("scheduled", "sent")),
                NotificationRow.cause == cause,
            )
        ).all()
        outputs += [
            _cancelled(row, resolution)
            for row in waiting
            if row.send_at is not None
            and resolved_in_wait(
                db.as_utc(row.occurred_at), db.as_utc(row.send_at), event.occurred_at
            )
        ]
    return outputs


def _cancel_if_resolved(session: Session, row: NotificationRow) -> list[Output]:
    """A retention message taken after the resolution that cancels it is cancelled at once."""
    if row.status != "scheduled" or row.cause is None or row.send_at is None:
        return []
    resolutions = session.exec(
        select(ResolutionRow)
        .where(ResolutionRow.customer_id == row.customer_id, ResolutionRow.cause == row.cause)
        .order_by(col(ResolutionRow.resolved_at), col(ResolutionRow.event_id))
    ).all()
    send_at, occurred_at = db.as_utc(row.send_at), db.as_utc(row.occurred_at)
    for resolution in resolutions:
        if resolved_in_wait(occurred_at, send_at, db.as_utc(resolution.resolved_at)):
            return [_cancelled(row, resolution)]
    return []


def _cancelled(row: NotificationRow, resolution: ResolutionRow) -> NotificationChanged:
    row.status = "cancelled"
    return NotificationChanged(
        event_id=f"{row.notification_id}:cancelled",
        type="notification.cancelled",
        occurred_at=db.as_utc(resolution.resolved_at),
        notification_id=row.notification_id,
        customer_id=row.customer_id,
        category=Category(row.category),
        template=row.template,
        channel=Channel(row.channel) if row.channel else None,
        dedupe_key=row.dedupe_key,
        reason_code="signal_resolved",
        reason=f"the {resolution.signal} signal resolved before the message went out",
        source_event_id=resolution.event_id,
    )


def _close_interventions(session: Session, event: StageChanged) -> None:
    """The first stage after at-risk says whether the customer was retained."""
    if event.stage in RETAINED_STAGES:
        outcome = "retained"
    elif event.stage in LOST_STAGES:
        outcome = "lost"
    else:
        return
    for row in session.exec(
        select(InterventionRow).where(
            InterventionRow.customer_id == event.customer_id,
            col(InterventionRow.outcome).is_(None),
            col(InterventionRow.at) < event.occurred_at,
        )
    ).all():
        row.outcome, row.outcome_at = outcome, event.occurred_at


# -- the API's reads and writes ---------------------------------------------------------------


class Preferences(BaseModel):
    opted_out: list[Channel] = []
    locale: Locale | None = None
    time_zone: TimeZone | None = None


def set_preferences(url: str, customer_id: str, preferences: Preferences, now: datetime) -> Profile:
    """Store a customer's own choices; an opt-out holds whatever consent core banking sends."""
    fields: dict[str, Any] = {"opted_out": sorted({c.value for c in preferences.opted_out})}
    fields |= {
        name: value
        for name in ("locale", "time_zone")
        if (value := getattr(preferences, name)) is not None
    }
    with db.serialised_session(url, _LOCK) as session:
        # Ids in the order the choices were made: they are in force from the same moment.
        made = f"preferences:{customer_id}:{now.isoformat()}:{uuid.uuid4().hex[:8]}"
        reads = _Reads(session, now, [customer_id])
        reads.change(customer_id, ALWAYS, made, fields)
        return reads.profile(customer_id, now)


class NotificationView(BaseModel):
    notification_id: str
    category: str
    template: str
    # The locale of the template's text: zh-CN, zh-Hant or en (null for rows stored before it
    # was recorded).
    template_locale: str | None
    channel: str | None
    # scheduled (queued for the senders; `deferred` when quiet hours moved it), sent or failed
    # (webhook delivery), suppressed or cancelled.
    status: str
    deferred: bool
    reason_code: str | None
    occurred_at: datetime
    send_at: datetime | None
    delivery_attempts: int | None
    delivery_error: str | None


def notifications(url: str, customer_id: str, limit: int) -> list[NotificationView]:
    """A customer's notifications and their delivery status, newest first."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(NotificationRow)
            .where(NotificationRow.customer_id == customer_id)
            .order_by(col(NotificationRow.occurred_at).desc())
            .limit(limit)
        ).all()
        return [
            NotificationView(
                **{
                    **r.model_dump(),
                    "occurred_at": db.as_utc(r.occurred_at),
                    "send_at": db.as_utc(r.send_at) if r.send_at else None,
                    "deferred": r.send_at is not None
                    and db.as_utc(r.send_at) != db.as_utc(r.occurred_at),
                }
            )
            for r in rows
        ]


def record_delivery(
    url: str, notification_id: str, status: str, attempts: int, error: str | None
) -> None:
    """What the webhook delivery of a scheduled notification came to."""
    with db.serialised_session(url, _LOCK) as session:
        row = session.get(NotificationRow, notification_id)
        if row is None or row.status != "scheduled":
            return  # cancelled meanwhile, or already recorded by an earlier delivery
        row.status, row.delivery_attempts, row.delivery_error = status, attempts, error


_PRIORITY_ORDER = {"high": 0, "normal": 1, "low": 2}
_STATUS_ORDER = {"open": 0, "queued": 1, "closed": 2}


def tasks_of(
    url: str,
    assignee: str,
    include_closed: bool,
    rules: NotifyRules | None = None,
    kind: str | None = None,
) -> list[RmTaskChanged]:
    """An RM's (or queue's) tasks, of one kind or all: open first, then queued, by priority
    and due time; with `rules`, the lead tasks within the daily budget only."""
    query = select(TaskRow).where(TaskRow.assignee == assignee)
    if kind is not None:
        query = query.where(TaskRow.kind == kind)
    with db.session_scope(url) as session:
        rows = session.exec(query).all()
        tasks = [RmTaskChanged.model_validate_json(r.task) for r in rows]
    if rules is not None:
        tasks = within_lead_budget(tasks, rules)
    if not include_closed:
        tasks = [t for t in tasks if t.status != "closed"]
    return sorted(
        tasks, key=lambda t: (_STATUS_ORDER[t.status], _PRIORITY_ORDER[t.priority.value], t.due_at)
    )


def task_assignee(url: str, task_id: str) -> str | None:
    """Whose task it is (an RM id or a team queue); None when there is no such task."""
    with db.session_scope(url) as session:
        row = session.get(TaskRow, task_id)
        return None if row is None else row.assignee


def record_outcome(
    url: str, task_id: str, outcome: str, note: str | None, now: datetime
) -> list[RmTaskChanged] | None:
    """Close a task with its outcome; None when there is no such task. Closing an open task
    frees a place: the assignee's most urgent queued task (by priority, then due time) opens.
    Returns the changed tasks, to publish."""
    with db.serialised_session(url, _LOCK) as session:
        row = session.get(TaskRow, task_id)
        if row is None:
            return None
        task = RmTaskChanged.model_validate_json(row.task)
        was_open = row.status == "open"
        closed = task.model_copy(
            update={
                "event_id": f"{task_id}:closed:{outcome}",
                "type": "rm_task.closed",
                "occurred_at": now,
                "status": "closed",
                "outcome": outcome,
                "note": note,
            }
        )
        row.status, row.outcome, row.task = "closed", outcome, encode(closed)
        changed = [closed]
        queued = session.exec(
            select(TaskRow).where(TaskRow.assignee == row.assignee, TaskRow.status == "queued")
        ).all()
        if was_open and queued:
            chosen = min(queued, key=lambda r: (_PRIORITY_ORDER[r.priority], db.as_utc(r.due_at)))
            released = RmTaskChanged.model_validate_json(chosen.task).model_copy(
                update={
                    "event_id": f"{chosen.task_id}:released",
                    "type": "rm_task.released",
                    "occurred_at": now,
                    "status": "open",
                }
            )
            chosen.status, chosen.task = "open", encode(released)
            changed.append(released)
        return changed


class TaskSummary(BaseModel):
    by_assignee: dict[str, dict[str, int]]
    outcomes: dict[str, int]
    overdue_open: int


def task_summary(url: str, now: datetime) -> TaskSummary:
    """Open, queued and closed tasks per assignee, outcomes, and open tasks past due."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(TaskRow.assignee, TaskRow.status, TaskRow.outcome, TaskRow.due_at)
        ).all()
    by_assignee: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    outcomes: dict[str, int] = defaultdict(int)
    overdue = 0
    for assignee, status, outcome, due_at in rows:
        by_assignee[assignee][status] += 1
        if outcome:
            outcomes[outcome] += 1
        if status == "open" and db.as_utc(due_at) < now:
            overdue += 1
    return TaskSummary(
        by_assignee={a: dict(s) for a, s in sorted(by_assignee.items())},
        outcomes=dict(outcomes),
        overdue_open=overdue,
    )


class UpliftCell(BaseModel):
    tier: str
    cause: str
    treated: int
    treated_retained: int
    holdout: int
    holdout_retained: int
    treated_retention: float | None
    holdout_retention: float | None
    uplift: float | None


def uplift(url: str) -> list[UpliftCell]:
    """Retention of treated against holdout at-risk customers, per tier and cause, counting
    only interventions whose outcome is known (the customer left at-risk one way or the
    other)."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(
                InterventionRow.tier,
                InterventionRow.cause,
                InterventionRow.treated,
                InterventionRow.outcome,
            ).where(col(InterventionRow.outcome).is_not(None))
        ).all()
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for tier, cause, treated, outcome in rows:
        cell = cells[(tier, cause)]
        offset = 0 if treated else 2
        cell[offset] += 1
        cell[offset + 1] += outcome == "retained"

    def rate(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    out = []
    for (tier, cause), (t, tr, h, hr) in sorted(cells.items()):
        treated_rate, holdout_rate = rate(tr, t), rate(hr, h)
        out.append(
            UpliftCell(
                tier=tier,
                cause=cause,
                treated=t,
                treated_retained=tr,
                holdout=h,
                holdout_retained=hr,
                treated_retention=treated_rate,
                holdout_retention=holdout_rate,
                uplift=None
                if treated_rate is None or holdout_rate is None
                else round(treated_rate - holdout_rate, 4),
            )
        )
    return out
