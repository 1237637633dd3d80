"""Notify's decisions, a batch at a time: one serialised transaction reads what the batch's
events need (`store.Facts`), asks the rules (services/notify/domain.py) for each event in turn,
each on what the events before it decided, and writes the batch's rows at its end. Also the
commands that change what was decided: a customer's own preferences, a webhook delivery's
result, an RM's outcome for a task."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import select

from schemas.account_events import CustomerUpdated, Locale, TimeZone
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
    on_anniversary,
    on_birthday,
    on_churn_signal,
    on_lead,
    on_ledger_entry,
    on_referral,
    on_stage_changed,
    profiles_read,
    resolved_in_wait,
    schedule,
    task_created,
)
from services.notify.store import (
    ALWAYS,
    DERIVED,
    LOCK,
    PRIORITY_ORDER,
    Facts,
    InterventionRow,
    NotificationRow,
    NotifyInput,
    Output,
    ResolutionRow,
    TaskRow,
    known_outputs,
)
from services.runtime import db
from services.runtime.codec import encode

log = logging.getLogger(__name__)


RETAINED_STAGES = (Stage.ACQUISITION, Stage.GROWTH, Stage.MATURITY)


LOST_STAGES = (Stage.DORMANT, Stage.CHURNED)


def _customers_read(events: list[NotifyInput]) -> set[str]:
    """Whose profiles deciding these events reads or changes."""
    found: set[str] = set()
    for event in events:
        if isinstance(event, CustomerUpdated):
            found.add(event.customer_id)
        elif isinstance(event, ChurnSignalChanged):
            # Reads no profile, but its customer's messages and resolutions.
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
        with db.serialised_session(url, LOCK) as session:
            known = known_outputs(session, events)
            reads = Facts(session, since, _customers_read(events))
            taken: list[list[Output] | Exception] = [
                _take(reads, event, rules, now, known) for event in events
            ]
            reads.write()
            return taken
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.warning("an event of a batch of %d failed; taking it again event by event", len(events))
    results: list[list[Output] | Exception] = []
    with db.serialised_session(url, LOCK) as session:
        known = known_outputs(session, events)
        reads = Facts(session, since, _customers_read(events), each_written_once=False)
        for event in events:
            taken_before = event.event_id in known
            try:
                with session.begin_nested():
                    results.append(_take(reads, event, rules, now, known))
                    reads.write()
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                results.append(exc)
                if not taken_before:
                    known.pop(event.event_id, None)
                # What the event wrote was rolled back with it: read afresh.
                reads = Facts(session, since, each_written_once=False)
    return results


def _take(
    reads: Facts,
    event: NotifyInput,
    rules: NotifyRules,
    now: datetime,
    known: dict[str, bytes],
) -> list[Output]:
    """`known`: the stored outputs of the events already taken, by event id (read for the whole
    batch at once, and added to as events are taken)."""
    if (stored := known.get(event.event_id)) is not None:
        return [_decode_output(raw) for raw in orjson.loads(stored)]
    outputs = _decide(reads, event, rules)
    stored = orjson.dumps([encode(o).decode() for o in outputs])
    reads.taken(event.event_id, stored, now)
    known[event.event_id] = stored
    return outputs


def _decode_output(raw: str) -> Output:
    data = orjson.loads(raw)
    if str(data["type"]).startswith("rm_task."):
        return RmTaskChanged.model_validate(data)
    return NotificationChanged.model_validate(data)


def _decide(reads: Facts, event: NotifyInput, rules: NotifyRules) -> list[Output]:
    if isinstance(event, CustomerUpdated):
        _update_profile(reads, event)
        return []
    decision = Decision()
    if isinstance(event, StageChanged):
        stage = {"tier": event.tier.value, "stage": event.stage.value}
        reads.change(event.customer_id, event.occurred_at, event.event_id, stage)
        _close_interventions(reads, event)
        profile = reads.profile(event.customer_id, event.occurred_at)
        decision = on_stage_changed(profile, event, rules)
    elif isinstance(event, ChurnSignalChanged):
        return _cancel(reads, event, on_churn_signal(event).cancel_causes)
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
    return _record(reads, decision, event.event_id, rules)


def _update_profile(reads: Facts, event: CustomerUpdated) -> None:
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
    reads: Facts,
    decision: Decision,
    source_event_id: str,
    rules: NotifyRules,
) -> list[Output]:
    outputs: list[Output] = []
    for message in decision.messages:
        profile = reads.profile(message.customer_id, message.at)
        history = reads.sent_around(message.customer_id, message.at)
        out = schedule(message, profile, history, rules, source_event_id)
        row = reads.made(
            NotificationRow,
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
        outputs += [out, *_cancel_if_resolved(reads, row)]
    for task in decision.tasks:
        day = task.at.replace(hour=0, minute=0, second=0, microsecond=0)
        assigned_today = reads.tasks_open_on(day, task.assignee)
        created = task_created(task, assigned_today, rules, source_event_id)
        reads.add_task(
            day,
            reads.made(
                TaskRow,
                task_id=created.task_id,
                kind=created.kind,
                assignee=created.assignee,
                customer_id=created.customer_id,
                status=created.status,
                priority=created.priority.value,
                created_at=created.occurred_at,
                due_at=created.due_at,
                task=encode(created),
            ),
        )
        outputs.append(created)
    if decision.intervention is not None:
        i = decision.intervention
        if not reads.has_intervention(i.customer_id, i.at):
            reads.add_intervention(
                reads.made(
                    InterventionRow,
                    customer_id=i.customer_id,
                    at=i.at,
                    tier=i.tier,
                    cause=i.cause,
                    treated=i.treated,
                )
            )
    return outputs


def _cancel(reads: Facts, event: ChurnSignalChanged, causes: list[str]) -> list[Output]:
    outputs: list[Output] = []
    for cause in causes:
        resolution = reads.made(
            ResolutionRow,
            event_id=event.event_id,
            cause=cause,
            customer_id=event.customer_id,
            signal=event.signal.value,
            resolved_at=event.occurred_at,
        )
        reads.add_resolution(resolution)
        outputs += [
            _cancelled(row, resolution)
            for row in reads.waiting(event.customer_id, cause)
            if row.send_at is not None
            and resolved_in_wait(
                db.as_utc(row.occurred_at), db.as_utc(row.send_at), event.occurred_at
            )
        ]
    return outputs


def _cancel_if_resolved(reads: Facts, row: NotificationRow) -> list[Output]:
    """A retention message taken after the resolution that cancels it is cancelled at once."""
    if row.status != "scheduled" or row.cause is None or row.send_at is None:
        return []
    send_at, occurred_at = db.as_utc(row.send_at), db.as_utc(row.occurred_at)
    for resolution in reads.resolutions_of(row.customer_id, row.cause):
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


def _close_interventions(reads: Facts, event: StageChanged) -> None:
    """The first stage after at-risk says whether the customer was retained."""
    if event.stage in RETAINED_STAGES:
        outcome = "retained"
    elif event.stage in LOST_STAGES:
        outcome = "lost"
    else:
        return
    for row in reads.open_interventions(event.customer_id, event.occurred_at):
        row.outcome, row.outcome_at = outcome, event.occurred_at


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
    with db.serialised_session(url, LOCK) as session:
        # Ids in the order the choices were made: they are in force from the same moment.
        made = f"preferences:{customer_id}:{now.isoformat()}:{uuid.uuid4().hex[:8]}"
        reads = Facts(session, now, [customer_id])
        reads.change(customer_id, ALWAYS, made, fields)
        reads.write()
        return reads.profile(customer_id, now)


def record_delivery(
    url: str, notification_id: str, status: str, attempts: int, error: str | None
) -> None:
    """What the webhook delivery of a scheduled notification came to."""
    with db.serialised_session(url, LOCK) as session:
        row = session.get(NotificationRow, notification_id)
        if row is None or row.status != "scheduled":
            return  # cancelled meanwhile, or already recorded by an earlier delivery
        row.status, row.delivery_attempts, row.delivery_error = status, attempts, error


def record_outcome(
    url: str, task_id: str, outcome: str, note: str | None, now: datetime
) -> list[RmTaskChanged] | None:
    """Close a task with its outcome; None when there is no such task. Closing an open task
    frees a place: the assignee's most urgent queued task (by priority, then due time) opens.
    Returns the changed tasks, to publish."""
    with db.serialised_session(url, LOCK) as session:
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
            chosen = min(queued, key=lambda r: (PRIORITY_ORDER[r.priority], db.as_utc(r.due_at)))
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
