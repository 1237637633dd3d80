"""Notify's state in SQL: the tables (customer profiles, the notifications and tasks it
decided, the interventions it measures, churn signals' resolutions, and the events it has taken
with the outputs each gave), what a batch's decisions read (`Facts`, each customer's rows in one
query per table), and its writes. The decisions are services/notify/service.py's; the API's
reads are services/notify/read_model.py's."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, LargeBinary, Table, func, or_
from sqlmodel import Column, Field, Session, SQLModel, col, select

from schemas.account_events import AccountEvent
from schemas.lifecycle import (
    ChurnSignalChanged,
    CustomerBirthday,
    StageChanged,
    TenureAnniversary,
)
from schemas.notify import Category, NotificationChanged, RmTaskChanged
from schemas.referral import LeadChanged, ReferralChanged
from schemas.rewards import LedgerEntryBooked
from services.notify.domain import (
    Profile,
    ProfileChange,
    Sent,
    profile_as_of,
)
from services.runtime import db

log = logging.getLogger(__name__)
_TIME = DateTime(timezone=True)
Row = TypeVar("Row", bound=SQLModel)
LOCK = "rapport-notify"
# Caps and de-duplication count the messages scheduled this long either side of a message.
HISTORY_WINDOW = timedelta(days=2)
# A message not gone out yet: "sent" is handed to a webhook sender that holds it until send_at.
WAITING = ("scheduled", "sent")

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


class Facts:
    """What a transaction's decisions read, each customer's read once (a batch's customers in one
    query each) and kept with what the transaction writes: profile changes, the messages still
    to go out (for caps, de-duplication and cancellations), churn signals' resolutions, the
    interventions, and each day's open tasks per assignee. No decision queries the database
    after that: a query in the middle of a batch flushed the rows before it one statement at a
    time, and those flushes had been most of the worker's database time.

    The rows read are the session's own objects: a change made to them in the transaction is
    written by the commit. The rows made in it are plain objects until `write`, which inserts
    each table's at once (`db.insert_rows`: COPY on PostgreSQL) with whatever was changed in
    them meanwhile (the ORM's unit of work had been a fifth of the worker's time there).
    After `write` they are not followed: a transaction that goes on deciding after a `write`
    (one savepoint per event) passes `each_written_once=False`, and its rows are added to the
    session instead."""

    def __init__(
        self,
        session: Session,
        since: datetime,
        customer_ids: Iterable[str] = (),
        each_written_once: bool = True,
    ) -> None:
        self.session = session
        self.each_written_once = each_written_once
        # The earliest a message of the transaction counts from: caps and de-duplication look
        # two days either side of a message, dated at its event.
        self.since = since - HISTORY_WINDOW
        self.changes: dict[str, list[ProfileChange]] = {}
        self.notifications: dict[str, list[NotificationRow]] = {}
        self.resolutions: dict[str, list[ResolutionRow]] = {}
        self.interventions: dict[str, list[InterventionRow]] = {}
        self.open_tasks: dict[datetime, dict[str, int]] = {}  # per day, per assignee
        # Rows nothing in the transaction reads back, written together (`write`).
        self.new_changes: list[dict[str, Any]] = []
        self.new_sources: list[dict[str, Any]] = []
        # Rows made in the transaction, by table, each inserted by `write` as it stands then.
        self.new_rows: dict[type[SQLModel], list[SQLModel]] = {}
        self._load(set(customer_ids))

    def _load(self, customer_ids: set[str]) -> None:
        if not customer_ids:
            return
        for customer_id in customer_ids:
            self.changes[customer_id], self.notifications[customer_id] = [], []
            self.resolutions[customer_id], self.interventions[customer_id] = [], []
        among = customer_ids
        # Columns, not rows: a customer's changes grow with every stage change, and building
        # an ORM object for each had been a sixth of the worker's time.
        for customer_id, effective_at, event_id, fields in self.session.exec(
            select(
                ProfileChangeRow.customer_id,
                ProfileChangeRow.effective_at,
                ProfileChangeRow.event_id,
                ProfileChangeRow.fields,
            ).where(db.among(self.session, ProfileChangeRow.customer_id, among))
        ):
            self.changes[customer_id].append(
                ProfileChange(db.as_utc(effective_at), event_id, dict(fields))
            )
        # Still to go out: within the caps' window, or with a cause a resolution may cancel.
        for row in self.session.exec(
            select(NotificationRow).where(
                db.among(self.session, NotificationRow.customer_id, among),
                col(NotificationRow.status).in_(WAITING),
                or_(
                    col(NotificationRow.send_at) >= self.since,
                    col(NotificationRow.cause).is_not(None),
                ),
            )
        ):
            self.notifications[row.customer_id].append(row)
        for resolution in self.session.exec(
            select(ResolutionRow).where(db.among(self.session, ResolutionRow.customer_id, among))
        ):
            self.resolutions[resolution.customer_id].append(resolution)
        for intervention in self.session.exec(
            select(InterventionRow).where(
                db.among(self.session, InterventionRow.customer_id, among)
            )
        ):
            self.interventions[intervention.customer_id].append(intervention)

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
        self.new_changes.append(
            {"event_id": event_id, "customer_id": customer_id, "effective_at": at, "fields": fields}
        )

    def taken(self, event_id: str, outputs: bytes, now: datetime) -> None:
        self.new_sources.append({"event_id": event_id, "outputs": outputs, "processed_at": now})

    def write(self) -> None:
        """The rows made so far, each table's at once."""
        made = {
            model: [{name: getattr(row, name) for name in _columns(model)} for row in rows]
            for model, rows in self.new_rows.items()
        }
        self.new_rows.clear()
        written: list[tuple[type[SQLModel], list[dict[str, Any]]]] = [
            (ProfileChangeRow, self.new_changes),
            (NotifySourceRow, self.new_sources),
            *made.items(),
        ]
        for model, values in written:
            db.insert_rows(self.session, _table(model), values)
            values.clear()

    def made(self, model: type[Row], **fields: Any) -> Row:
        """A new row of `model`, for the add_* methods below. `write` reads its attributes as
        they stand then, so it is built as the ORM builds a row it loads: SQLModel's
        constructor assigns every field through pydantic and the ORM's events, 44 µs a
        notification and a sixth of a batch's transaction, against 2.3 µs. A transaction that
        adds its rows to the session (`each_written_once=False`) gets them made as usual."""
        if not self.each_written_once:
            return model(**fields)
        row: Row = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
        row.__dict__.update(_defaults(model))
        row.__dict__.update(fields)
        return row

    def _queued(self, row: SQLModel) -> None:
        """`row` to be written with the batch (or added to the session, one savepoint an event)."""
        if self.each_written_once:
            self.new_rows.setdefault(type(row), []).append(row)
        else:
            self.session.add(row)

    def sent_around(self, customer_id: str, at: datetime) -> list[Sent]:
        """The customer's scheduled messages within the history window of `at`."""
        self._known(customer_id)
        return [
            Sent(Category(row.category), row.dedupe_key, send_at)
            for row in self.notifications[customer_id]
            if row.status == "scheduled"
            and row.send_at is not None
            and at - HISTORY_WINDOW <= (send_at := db.as_utc(row.send_at)) <= at + HISTORY_WINDOW
        ]

    def waiting(self, customer_id: str, cause: str) -> list[NotificationRow]:
        """The customer's messages for `cause` not gone out yet ("sent": handed to a webhook
        sender that holds it until send_at)."""
        self._known(customer_id)
        return [
            row
            for row in self.notifications[customer_id]
            if row.status in WAITING and row.cause == cause
        ]

    def add_notification(self, row: NotificationRow) -> None:
        self._known(row.customer_id)
        self.notifications[row.customer_id].append(row)
        self._queued(row)

    def resolutions_of(self, customer_id: str, cause: str) -> list[ResolutionRow]:
        self._known(customer_id)
        found = [r for r in self.resolutions[customer_id] if r.cause == cause]
        return sorted(found, key=lambda r: (db.as_utc(r.resolved_at), r.event_id))

    def add_resolution(self, row: ResolutionRow) -> None:
        self._known(row.customer_id)
        self.resolutions[row.customer_id].append(row)
        self._queued(row)

    def open_interventions(self, customer_id: str, before: datetime) -> list[InterventionRow]:
        self._known(customer_id)
        return [
            row
            for row in self.interventions[customer_id]
            if row.outcome is None and db.as_utc(row.at) < before
        ]

    def has_intervention(self, customer_id: str, at: datetime) -> bool:
        self._known(customer_id)
        return any(db.as_utc(row.at) == at for row in self.interventions[customer_id])

    def add_intervention(self, row: InterventionRow) -> None:
        self._known(row.customer_id)
        self.interventions[row.customer_id].append(row)
        self._queued(row)

    def tasks_open_on(self, day: datetime, assignee: str) -> int:
        """Tasks created on `day` still open, per assignee: read once a day and transaction.
        A task of that day made in the transaction reads it first, so none is pending here."""
        counts = self.open_tasks.get(day)
        if counts is None:
            with self.session.no_autoflush:
                rows = self.session.exec(
                    select(TaskRow.assignee, func.count())
                    .where(
                        col(TaskRow.created_at) >= day,
                        col(TaskRow.created_at) < day + timedelta(days=1),
                        TaskRow.status == "open",
                    )
                    .group_by(col(TaskRow.assignee))
                )
                counts = self.open_tasks[day] = {name: int(n) for name, n in rows}
        return counts.get(assignee, 0)

    def add_task(self, day: datetime, row: TaskRow) -> None:
        counts = self.open_tasks.setdefault(day, {})
        if row.status == "open":
            counts[row.assignee] = counts.get(row.assignee, 0) + 1
        self._queued(row)


@cache
def _defaults(model: type[SQLModel]) -> dict[str, Any]:
    """The values of `model`'s fields that have a default."""
    found: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.default_factory is not None or isinstance(info.default, list | dict | set):
            # Every row made would share the one value.
            raise TypeError(f"{model.__name__}.{name}: a mutable default Facts.made cannot share")
        if not info.is_required():
            found[name] = info.default
    return found


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def _columns(model: type[SQLModel]) -> list[str]:
    return [column.name for column in _table(model).columns]


def known_outputs(session: Session, events: list[NotifyInput]) -> dict[str, bytes]:
    ids = list({event.event_id for event in events})
    rows = session.exec(
        select(NotifySourceRow).where(db.among(session, NotifySourceRow.event_id, ids))
    )
    return {row.event_id: row.outputs for row in rows}


PRIORITY_ORDER = {"high": 0, "normal": 1, "low": 2}
STATUS_ORDER = {"open": 0, "queued": 1, "closed": 2}
