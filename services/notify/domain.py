"""Notify rules: who hears what, through which channel, when, and which relationship manager
follows up. Plain functions over plain values; no I/O, no wall clock (quiet hours and caps use
the event's time in the customer's time zone).

Routing by tier for a customer who turns at risk (how banks split service by value):
- high net worth: an RM task, high priority, due in 24 hours; no automated message;
- affluent: an RM task (normal priority) and an app push;
- mass: an automated message by the preferred channel, with an offer matched to the cause.
A deterministic share of at-risk customers (the holdout) gets no intervention at all, so that
the uplift of the interventions can be measured.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from schemas.account_events import Locale
from schemas.lifecycle import (
    ChurnSignalChanged,
    CustomerBirthday,
    Stage,
    StageChanged,
    TenureAnniversary,
    Tier,
)
from schemas.notify import Category, Channel, NotificationChanged, Priority, RmTaskChanged
from schemas.referral import LeadChanged, LeadType, ReferralChanged
from schemas.rewards import LedgerEntryBooked
from services.notify.locales import FALLBACK, template_locale
from services.notify.templates import RETENTION_OFFERS, TEMPLATES

_ID_NAMESPACE = uuid.UUID("0b9f8e0c-5d7a-4f4e-9c52-8a1d3e6b2f47")
# The locales templates are kept in (zh-CN, zh-Hant, en).
TEMPLATE_LOCALES = frozenset(locale for _, locale in TEMPLATES)


class NotifyRules(BaseModel):
    """Routing, quiet hours, caps and the holdout, with their defaults."""

    model_config = ConfigDict(frozen=True)

    quiet_start_hour: Annotated[int, Field(ge=0, le=23)] = 21
    quiet_end_hour: Annotated[int, Field(ge=0, le=23)] = 8
    daily_cap: Annotated[int, Field(ge=0)] = 3
    service_daily_cap: Annotated[int, Field(ge=0)] = 5
    dedupe_hours: Annotated[int, Field(ge=0)] = 24
    holdout_share: Annotated[float, Field(ge=0, le=1)] = 0.10
    hnw_task_due_hours: Annotated[int, Field(ge=1)] = 24
    affluent_task_due_hours: Annotated[int, Field(ge=1)] = 72
    lead_task_due_hours: Annotated[int, Field(ge=1)] = 168
    rm_daily_capacity: Annotated[int, Field(ge=1)] = 20
    # Lead tasks an RM's worklist shows per day of their creation, the best scored first; a
    # team queue's (a branch's, the corporate team's). The rest wait on the referral service's
    # ranked lead list. Applied when the list is read: a budget decided as tasks are created
    # would depend on the order in which partitions are taken.
    lead_daily_budget: Annotated[int, Field(ge=0)] = 2
    lead_queue_daily_budget: Annotated[int, Field(ge=0)] = 10
    # Leads scoring under it (0-100) are never handed out as tasks: they stay on the referral
    # service's ranked lead list.
    lead_task_min_score: Annotated[float, Field(ge=0, le=100)] = 0.0
    # Any BCP 47 tag: for customers whose profile gives no locale.
    default_locale: Locale = "zh-CN"
    default_time_zone: str = "Asia/Shanghai"
    corporate_queue: str = "queue:corporate-rm"
    team_queue: str = "queue:branch-service"


class Profile(BaseModel):
    """What notify knows of a customer: from `customer.updated`, the lifecycle stream and
    `PUT /customers/{id}/preferences`."""

    customer_id: str
    locale: Locale | None = None
    time_zone: str | None = None
    rm_id: str | None = None
    tier: Tier = Tier.MASS
    stage: Stage | None = None
    # Consent from core banking; None: not stated (push and SMS are then allowed for service
    # and retention messages, e-mail is not).
    consent: dict[Channel, bool] = {}
    # Opt-outs from the preferences API: absolute, whatever the consent flags say.
    opted_out: list[Channel] = []


@dataclass(frozen=True)
class ProfileChange:
    """A change to what notify knows of a customer, in force from its event time: fields of
    `Profile` to set; `consent` entries are merged into the consent already stated."""

    effective_at: datetime
    event_id: str
    fields: dict[str, Any]


def profile_as_of(customer_id: str, changes: list[ProfileChange], at: datetime) -> Profile | None:
    """The customer's profile as it stood at `at`: the changes in force by then, applied in
    event-time order (the event id breaks ties), whatever order notify took them in. A replay
    then decides with the profile a live run had: not with a change made minutes later. None
    when nothing is known of the customer yet."""
    in_force = sorted(
        (c for c in changes if c.effective_at <= at), key=lambda c: (c.effective_at, c.event_id)
    )
    if not in_force:
        return None
    fields: dict[str, Any] = {"consent": {}}
    for change in in_force:
        for name, value in change.fields.items():
            if name == "consent":
                fields["consent"] = {**fields["consent"], **value}
            else:
                fields[name] = value
    return Profile.model_validate({**fields, "customer_id": customer_id})


def profiles_read(
    event: StageChanged
    | ChurnSignalChanged
    | TenureAnniversary
    | CustomerBirthday
    | LeadChanged
    | ReferralChanged
    | LedgerEntryBooked,
) -> list[tuple[str, bool]]:
    """Whose profile deciding the event reads, and whether its tier too (which stage changes
    set): the facts to be taken before the event is decided."""
    if isinstance(event, LeadChanged):
        return [(event.suggested_referrer, True)] if event.type == "lead.detected" else []
    if isinstance(event, ReferralChanged):
        qualified = event.type == "referral.qualified" and event.referrer
        return [(event.referrer, False)] if qualified and event.referrer else []
    if isinstance(event, ChurnSignalChanged):
        return []
    return [(event.customer_id, False)]


def allowed_channels(profile: Profile) -> list[Channel]:
    """Channels the customer may be reached on, in order of preference."""
    defaults = {Channel.PUSH: True, Channel.SMS: True, Channel.EMAIL: False}
    return [
        c
        for c in (Channel.PUSH, Channel.SMS, Channel.EMAIL)
        if profile.consent.get(c, defaults[c]) and c not in profile.opted_out
    ]


def in_holdout(customer_id: str, share: float) -> bool:
    """Whether a customer belongs to the no-intervention holdout: the same answer for the same
    id on every worker and every replay."""
    digest = hashlib.sha256(f"holdout|{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _zone(profile: Profile, rules: NotifyRules) -> ZoneInfo:
    try:
        return ZoneInfo(profile.time_zone or rules.default_time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(rules.default_time_zone)


def next_allowed(at: datetime, zone: ZoneInfo, rules: NotifyRules) -> datetime:
    """`at` if it is outside quiet hours in the customer's zone, else the end of quiet hours."""
    local = at.astimezone(zone)
    start, end = time(rules.quiet_start_hour), time(rules.quiet_end_hour)
    hour = local.timetz().replace(tzinfo=None)
    # Quiet hours may run across midnight, like 21:00-08:00.
    quiet = start <= hour < end if start <= end else hour >= start or hour < end
    if not quiet:
        return at
    day = local.date() if hour < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=zone).astimezone(at.tzinfo)


# -- templates ---------------------------------------------------------------------------------

_ENV = SandboxedEnvironment(autoescape=False)


@dataclass(frozen=True)
class Localised:
    """A context value given in each template locale (a retention offer): the template sees
    the text in its own locale."""

    texts: Mapping[str, str]

    def text(self, locale: str) -> str:
        return self.texts.get(locale) or self.texts[FALLBACK]


def choose_template_locale(locale: str | None, rules: NotifyRules) -> str:
    """The template locale for a customer's BCP 47 locale, or for the default when the profile
    gives none: by language and script (`zh-HK` -> zh-Hant, `zh-SG` -> zh-CN), English for a
    language without templates (see `services.notify.locales`)."""
    return template_locale(locale or rules.default_locale, TEMPLATE_LOCALES)


def render(template: str, locale: str, context: dict[str, Any]) -> tuple[str, str]:
    """Subject and body of a template in a template locale (English when the template has
    none in it)."""
    chosen = locale if (template, locale) in TEMPLATES else FALLBACK
    subject, body = TEMPLATES[(template, chosen)]
    values = tuple(
        sorted((k, v.text(chosen) if isinstance(v, Localised) else v) for k, v in context.items())
    )
    return subject, _rendered(body, values)


@functools.lru_cache(maxsize=4096)
def _rendered(body: str, values: tuple[tuple[str, Any], ...]) -> str:
    # A few templates and small contexts (points, years, an offer): most messages repeat a
    # text already rendered, and rendering had been a tenth of a batch's transaction.
    return _compiled(body).render(**dict(values))


@functools.cache
def _compiled(body: str) -> Template:
    # Compiling a template took as long as the rest of a decision: once per template.
    return _ENV.from_string(body)


# -- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A customer message the rules want to send; caps and de-duplication come after."""

    customer_id: str
    category: Category
    template: str
    context: dict[str, Any]
    dedupe_key: str
    at: datetime
    # A retention message names the cause it answers: cancelled if that resolves first.
    cause: str | None = None
    channel: Channel | None = None  # None: the customer's preferred allowed channel


@dataclass(frozen=True)
class Task:
    """A follow-up task for an RM or a team queue."""

    kind: str
    customer_id: str
    assignee: str
    priority: Priority
    at: datetime
    due_at: datetime
    summary: str
    tier: str | None = None
    cause: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    counterparty_key: str | None = None


@dataclass(frozen=True)
class Intervention:
    """An at-risk customer, treated or held out, for the uplift measurement."""

    customer_id: str
    tier: str
    cause: str
    treated: bool
    at: datetime


@dataclass
class Decision:
    messages: list[Message] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    intervention: Intervention | None = None
    # Causes whose pending retention messages are to be cancelled.
    cancel_causes: list[str] = field(default_factory=list)


_STAGE_TEMPLATES = {
    Stage.ACQUISITION: "welcome",
    Stage.GROWTH: "recommendation",
    Stage.MATURITY: "exclusive_service",
}


def on_stage_changed(profile: Profile, event: StageChanged, rules: NotifyRules) -> Decision:
    """Stage strategies, and the tiered response to a customer turning at risk."""
    decision = Decision()
    if event.type != "stage.changed":
        return decision
    at = event.occurred_at
    template = _STAGE_TEMPLATES.get(event.stage)
    if template is not None:
        decision.messages.append(
            Message(
                event.customer_id,
                Category.ENGAGEMENT,
                template,
                {},
                f"stage:{event.stage.value}",
                at,
            )
        )
    if event.stage is not Stage.AT_RISK:
        return decision
    cause = (event.probable_cause.value if event.probable_cause else None) or "disengagement"
    treated = not in_holdout(event.customer_id, rules.holdout_share)
    decision.intervention = Intervention(event.customer_id, event.tier.value, cause, treated, at)
    if not treated:
        return decision
    evidence: dict[str, Any] = {
        "churn_score": event.churn_score,
        "causes": [c.value for c in event.churn_causes],
        "reason": event.reason,
        "balance_avg_30d": str(event.balance_avg_30d),
    }
    assignee = profile.rm_id or rules.team_queue
    if event.tier is Tier.HNW:
        decision.tasks.append(
            Task(
                "retention_call",
                event.customer_id,
                assignee,
                Priority.HIGH,
                at,
                at + timedelta(hours=rules.hnw_task_due_hours),
                f"High-net-worth customer at risk ({cause}): call within 24 hours",
                event.tier.value,
                cause,
                evidence,
            )
        )
        return decision
    message = Message(
        event.customer_id,
        Category.RETENTION,
        "retention_offer",
        {"offer": Localised(RETENTION_OFFERS[cause])},
        f"retention:{cause}",
        at,
        cause,
    )
    if event.tier is Tier.AFFLUENT:
        decision.tasks.append(
            Task(
                "retention_call",
                event.customer_id,
                assignee,
                Priority.NORMAL,
                at,
                at + timedelta(hours=rules.affluent_task_due_hours),
                f"Affluent customer at risk ({cause}): get in touch",
                event.tier.value,
                cause,
                evidence,
            )
        )
        decision.messages.append(_replace_channel(message, Channel.PUSH))
    else:
        decision.messages.append(message)
    return decision


def _replace_channel(message: Message, channel: Channel) -> Message:
    return Message(**{**message.__dict__, "channel": channel})


def on_churn_signal(event: ChurnSignalChanged) -> Decision:
    """A resolved signal cancels the retention messages still waiting for quiet hours to end."""
    if event.type != "churn_signal.resolved":
        return Decision()
    return Decision(cancel_causes=[event.cause.value])


def resolved_in_wait(triggered_at: datetime, send_at: datetime, resolved_at: datetime) -> bool:
    """Whether a resolution of its cause cancels a retention message: it came after the message
    was triggered and before the message goes out. Decided on event times only, so the answer
    is the same whether notify takes the message or the resolution first (they come from two
    topics, and their order of arrival changes from run to run)."""
    return triggered_at <= resolved_at < send_at


def on_lead(event: LeadChanged, referrer: Profile | None, rules: NotifyRules) -> Decision:
    """A new lead: corporate leads go to the corporate RM team, retail leads to the referrer's RM
    (to ask the customer for an introduction)."""
    if event.type != "lead.detected" or (event.score or 0.0) < rules.lead_task_min_score:
        return Decision()
    due = event.occurred_at + timedelta(hours=rules.lead_task_due_hours)
    evidence = {
        "score": event.score,
        "transactions": event.strength.transactions,
        "customers": event.strength.customers,
        "direction": event.strength.direction.value,
        "window_days": event.strength.window_days,
    }
    if event.lead_type is LeadType.CORPORATE:
        task = Task(
            "corporate_lead",
            event.suggested_referrer,
            rules.corporate_queue,
            Priority.NORMAL,
            event.occurred_at,
            due,
            f"Business counterparty paid by or paying {event.strength.customers} of our "
            "customers: a corporate prospect",
            None,
            None,
            evidence,
            event.counterparty_key,
        )
    else:
        task = Task(
            "introduction_request",
            event.suggested_referrer,
            (referrer.rm_id if referrer else None) or rules.team_queue,
            Priority.LOW,
            event.occurred_at,
            due,
            "Ask the customer to introduce a counterparty they often transact with",
            referrer.tier.value if referrer else None,
            None,
            evidence,
            event.counterparty_key,
        )
    return Decision(tasks=[task])


def on_referral(event: ReferralChanged) -> Decision:
    """Thank the referrer when a referral qualifies."""
    if event.type != "referral.qualified" or event.referrer is None:
        return Decision()
    return Decision(
        messages=[
            Message(
                event.referrer,
                Category.SERVICE,
                "referral_qualified",
                {},
                f"referral:{event.referral_id}",
                event.occurred_at,
            )
        ]
    )


def on_ledger_entry(event: LedgerEntryBooked) -> Decision:
    """Tell the customer when points are credited."""
    if event.kind.value != "credit" or event.points <= 0:
        return Decision()
    return Decision(
        messages=[
            Message(
                event.customer_id,
                Category.SERVICE,
                "reward_credited",
                # Not the balance after the entry: it follows the order rewards booked
                # concurrent credits in, so a replay could tell a different figure.
                {"points": event.points},
                f"reward:{event.entry_id}",
                event.occurred_at,
            )
        ]
    )


def on_anniversary(event: TenureAnniversary) -> Decision:
    """An anniversary greeting."""
    return Decision(
        messages=[
            Message(
                event.customer_id,
                Category.GREETING,
                "anniversary",
                {"years": event.years},
                f"anniversary:{event.years}",
                event.occurred_at,
            )
        ]
    )


def on_birthday(event: CustomerBirthday) -> Decision:
    """A birthday greeting (dated at midnight: quiet hours move it to the morning)."""
    return Decision(
        messages=[
            Message(
                event.customer_id,
                Category.GREETING,
                "birthday",
                {},
                f"birthday:{event.occurred_at.year}",
                event.occurred_at,
            )
        ]
    )


@dataclass(frozen=True)
class Sent:
    """A message already scheduled for the customer (for caps and de-duplication)."""

    category: Category
    dedupe_key: str
    send_at: datetime


def notification_id(source_event_id: str, template: str, customer_id: str) -> str:
    """The same cause gives the same notification id on every replay."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{source_event_id}|{template}|{customer_id}"))


def schedule(
    message: Message,
    profile: Profile,
    history: list[Sent],
    rules: NotifyRules,
    source_event_id: str,
) -> NotificationChanged:
    """Apply consent, quiet hours, de-duplication and the daily caps to one message. `locale`
    is the customer's own (or the default); `template_locale` the one its text is in."""
    locale = profile.locale or rules.default_locale
    chosen = choose_template_locale(locale, rules)
    made_id = notification_id(source_event_id, message.template, message.customer_id)
    base: dict[str, Any] = {
        "event_id": made_id,
        "occurred_at": message.at,
        "notification_id": made_id,
        "customer_id": message.customer_id,
        "category": message.category,
        "template": message.template,
        "locale": locale,
        "template_locale": chosen,
        "dedupe_key": message.dedupe_key,
        "source_event_id": source_event_id,
    }

    def suppressed(code: str, reason: str) -> NotificationChanged:
        return NotificationChanged(
            type="notification.suppressed", reason_code=code, reason=reason, **base
        )

    channels = allowed_channels(profile)
    if message.channel is not None:
        channels = [c for c in channels if c is message.channel]
    if not channels:
        return suppressed(
            "no_channel",
            "the customer opted out of, or never consented to, every channel this message may use",
        )
    zone = _zone(profile, rules)
    send_at = next_allowed(message.at, zone, rules)
    # Compared by when the customer would get them: a message deferred by quiet hours to 08:00
    # and another triggered at 09:00 the same day would reach the customer an hour apart.
    window = timedelta(hours=rules.dedupe_hours)
    if any(
        s.dedupe_key == message.dedupe_key and abs(s.send_at - send_at) < window for s in history
    ):
        return suppressed(
            "duplicate", f"the same message went out within {rules.dedupe_hours} hours"
        )
    day = send_at.astimezone(zone).date()
    service = message.category is Category.SERVICE
    same_day = [
        s
        for s in history
        if s.send_at.astimezone(zone).date() == day and (s.category is Category.SERVICE) == service
    ]
    cap = rules.service_daily_cap if service else rules.daily_cap
    if len(same_day) >= cap:
        kind = "service" if service else "non-service"
        return suppressed("daily_cap", f"{cap} {kind} messages already scheduled for {day}")
    subject, body = render(message.template, chosen, message.context)
    return NotificationChanged(
        type="notification.scheduled",
        channel=channels[0],
        subject=subject,
        body=body,
        send_at=send_at,
        time_zone=str(zone),
        deferred=send_at != message.at,
        **base,
    )


def task_id(source_event_id: str, kind: str, customer_id: str) -> str:
    """The same cause gives the same task id on every replay."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"task|{source_event_id}|{kind}|{customer_id}"))


LEAD_TASKS = frozenset({"introduction_request", "corporate_lead"})


def within_lead_budget(tasks: list[RmTaskChanged], rules: NotifyRules) -> list[RmTaskChanged]:
    """An assignee's worklist without the lead tasks past the day's budget: of the lead tasks
    created on one day, the best scored (ties by task id), as many as the budget."""
    by_day: dict[tuple[str, object], list[RmTaskChanged]] = {}
    for task in tasks:
        if task.kind in LEAD_TASKS:
            by_day.setdefault((task.assignee, task.occurred_at.date()), []).append(task)
    left_out: set[str] = set()
    for (assignee, _), day in by_day.items():
        budget = (
            rules.lead_queue_daily_budget
            if assignee.startswith("queue:")
            else rules.lead_daily_budget
        )
        ranked = sorted(day, key=lambda t: (-_score(t), t.task_id))
        left_out |= {t.task_id for t in ranked[budget:]}
    return [t for t in tasks if t.task_id not in left_out]


def _score(task: RmTaskChanged) -> float:
    score = task.evidence.get("score")
    return float(score) if isinstance(score, int | float) else 0.0


def task_created(
    task: Task, assigned_today: int, rules: NotifyRules, source_event_id: str
) -> RmTaskChanged:
    """The task as created: open, or queued when its assignee's daily capacity is used up."""
    identifier = task_id(source_event_id, task.kind, task.customer_id)
    full = not task.assignee.startswith("queue:") and assigned_today >= rules.rm_daily_capacity
    return RmTaskChanged(
        event_id=identifier,
        type="rm_task.created",
        occurred_at=task.at,
        task_id=identifier,
        kind=task.kind,
        customer_id=task.customer_id,
        assignee=task.assignee,
        priority=task.priority,
        due_at=task.due_at,
        status="queued" if full else "open",
        tier=task.tier,
        cause=task.cause,
        summary=task.summary,
        evidence=task.evidence,
        counterparty_key=task.counterparty_key,
        source_event_id=source_event_id,
    )
