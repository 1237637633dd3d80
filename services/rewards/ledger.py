"""The rewards ledger in SQL: append-only entries, the balances they add up to, what caps
withheld, campaigns, redemptions, the audit trail and the transactional outbox.

Every write runs in one serialised transaction (`db.serialised_session`), so caps, balances and
the outbox order are decided as if writers took turns, on SQLite and PostgreSQL alike:
- an event is booked at most once: its id goes into `reward_source_events` in the same
  transaction as its entries, and a unique constraint on (source event, rule, customer) guards
  the entries themselves;
- an entry and its outbox row commit together or not at all; outbox sequence numbers are handed
  out inside the serialised transaction, so they commit in increasing order (the relay relies on
  it, see `outbox.py`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import DateTime, Numeric, Text, UniqueConstraint, func, text, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Column, Field, Session, SQLModel, col, select

from schemas.lifecycle import StageChanged, TenureAnniversary
from schemas.referral import ReferralChanged
from schemas.rewards import EntryKind, LedgerEntryBooked
from services.rewards.domain import (
    Booking,
    Campaign,
    Credited,
    Decision,
    RedemptionRefused,
    ReferrerHistory,
    RewardRules,
    Rule,
    on_anniversary,
    on_referral_qualified,
    on_referral_reversed,
    on_stage_changed,
)
from services.rewards.domain import redeem as decide_redemption
from services.runtime import db
from services.runtime.codec import encode
from services.runtime.tracing import current_traceparent

log = logging.getLogger(__name__)
_TIME = DateTime(timezone=True)
_LOCK = "rapport-rewards-ledger"
_ID_NAMESPACE = uuid.UUID("2c4b8a61-93f5-4c0e-bb39-5e3f6d1a7c20")
# How far a referral has got: a replayed older event never moves it back.
_REFERRAL_RANK = {
    "attributed": 1,
    "held": 1,
    "released": 2,
    "qualified": 3,
    "rejected": 4,
    "reversed": 5,
}
PENDING_STATUSES = ("attributed", "held", "released")

SourceEvent = ReferralChanged | StageChanged | TenureAnniversary


class LedgerEntryRow(SQLModel, table=True):
    __tablename__ = "reward_ledger_entries"
    __table_args__ = (
        UniqueConstraint("source_event_id", "rule", "customer_id", name="uq_reward_entry_source"),
    )

    id: int | None = Field(default=None, primary_key=True)
    entry_id: str = Field(unique=True, max_length=64)
    customer_id: str = Field(index=True, max_length=64)
    kind: str = Field(max_length=16)
    points: int
    cash: Decimal | None = Field(default=None, sa_column=Column(Numeric(20, 2), nullable=True))
    currency: str | None = Field(default=None, max_length=3)
    rule: str = Field(max_length=32)
    campaign_id: str | None = Field(default=None, max_length=64)
    reason: str = Field(max_length=300)
    source_event_id: str = Field(max_length=128)
    referral_id: str | None = Field(default=None, index=True, max_length=64)
    occurred_at: datetime = Field(sa_type=_TIME)
    booked_at: datetime = Field(sa_type=_TIME)
    actor: str | None = Field(default=None, max_length=64)
    points_balance: int


class RewardAccountRow(SQLModel, table=True):
    """The maintained points balance (`check_balances` proves it equals the entries' sum)."""

    __tablename__ = "reward_accounts"

    customer_id: str = Field(primary_key=True, max_length=64)
    points: int = 0
    flagged: bool = False
    flag_reason: str | None = Field(default=None, max_length=300)
    updated_at: datetime = Field(sa_type=_TIME)


class WithholdingRow(SQLModel, table=True):
    __tablename__ = "reward_withholdings"
    __table_args__ = (
        UniqueConstraint("source_event_id", "rule", "customer_id", name="uq_reward_withheld"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(index=True, max_length=64)
    points: int
    rule: str = Field(max_length=32)
    reason_code: str = Field(max_length=40)
    reason: str = Field(max_length=300)
    source_event_id: str = Field(max_length=128)
    referral_id: str | None = Field(default=None, max_length=64)
    occurred_at: datetime = Field(sa_type=_TIME)
    booked_at: datetime = Field(sa_type=_TIME)


class SourceEventRow(SQLModel, table=True):
    """Every event the ledger has taken, booked with its entries in one transaction."""

    __tablename__ = "reward_source_events"

    event_id: str = Field(primary_key=True, max_length=128)
    type: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_type=_TIME)
    processed_at: datetime = Field(sa_type=_TIME)


class ReferralRewardRow(SQLModel, table=True):
    """Where each referral stands, for the pending rewards a customer can expect."""

    __tablename__ = "reward_referrals"

    referral_id: str = Field(primary_key=True, max_length=64)
    referrer: str | None = Field(default=None, index=True, max_length=64)
    referee: str = Field(index=True, max_length=64)
    status: str = Field(max_length=16)
    updated_at: datetime = Field(sa_type=_TIME)


class CampaignRow(SQLModel, table=True):
    __tablename__ = "reward_campaigns"

    campaign_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=120)
    rule: str = Field(max_length=32)
    multiplier: Decimal = Field(sa_column=Column(Numeric(8, 2), nullable=False))
    bonus_points: int = 0
    starts_at: datetime = Field(sa_type=_TIME)
    ends_at: datetime = Field(sa_type=_TIME)
    active: bool = True
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=_TIME)
    updated_at: datetime = Field(sa_type=_TIME)


class RedemptionRow(SQLModel, table=True):
    """The answer given to each idempotency key, replayed when the key comes again."""

    __tablename__ = "reward_redemptions"

    customer_id: str = Field(primary_key=True, max_length=64)
    idempotency_key: str = Field(primary_key=True, max_length=128)
    request_hash: str = Field(max_length=64)
    status_code: int
    response: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_type=_TIME)


class AuditRow(SQLModel, table=True):
    """Who did what by hand: adjustments, campaign changes, flags cleared."""

    __tablename__ = "reward_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=_TIME)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=40)
    target: str = Field(max_length=128)
    detail: str = Field(sa_column=Column(Text, nullable=False))


class OutboxRow(SQLModel, table=True):
    __tablename__ = "reward_outbox"

    seq: int | None = Field(default=None, primary_key=True)
    entry_id: str = Field(max_length=64)
    key: str = Field(max_length=64)
    payload: bytes
    published_at: datetime | None = Field(default=None, sa_type=_TIME, index=True)
    # W3C trace context of the event being handled when the entry was booked.
    traceparent: str | None = Field(default=None, max_length=55)


class OutboxLeaseRow(SQLModel, table=True):
    """Which process relays the outbox (one at a time, so records go out in order)."""

    __tablename__ = "reward_outbox_lease"

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=64)
    expires_at: datetime = Field(sa_type=_TIME)


def entry_id(source_event_id: str, rule: str, customer_id: str) -> str:
    """The same cause books the same entry id, however often it is replayed."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{source_event_id}|{rule}|{customer_id}"))


# -- booking ---------------------------------------------------------------------------------


def _account(session: Session, customer_id: str, now: datetime) -> RewardAccountRow:
    account = session.get(RewardAccountRow, customer_id)
    if account is None:
        account = RewardAccountRow(customer_id=customer_id, updated_at=now)
        session.add(account)
        session.flush()  # into the identity map: a second get in this transaction finds it
    return account


def _book(
    session: Session,
    bookings: Sequence[Booking],
    source_event_id: str,
    occurred_at: datetime,
    now: datetime,
    actor: str | None = None,
    *,
    trace: str | None,
) -> list[LedgerEntryBooked]:
    """`trace`: the traceparent of the request or record that caused the entries; the relay
    sends them later, under it."""
    booked = []
    for b in bookings:
        account = _account(session, b.customer_id, now)
        account.points += b.points
        account.updated_at = now
        if account.points < 0 and b.kind is EntryKind.REVERSAL and not account.flagged:
            # The points were spent before the clawback: the debt stays visible for review.
            account.flagged = True
            account.flag_reason = f"balance {account.points} after a clawback ({b.reason})"[:300]
        row = LedgerEntryRow(
            entry_id=entry_id(source_event_id, b.rule.value, b.customer_id),
            customer_id=b.customer_id,
            kind=b.kind.value,
            points=b.points,
            rule=b.rule.value,
            campaign_id=b.campaign_id,
            reason=b.reason[:300],
            source_event_id=source_event_id,
            referral_id=b.referral_id,
            occurred_at=occurred_at,
            booked_at=now,
            actor=actor,
            points_balance=account.points,
        )
        session.add(row)
        event = _published(row, account.flagged)
        session.add(
            OutboxRow(
                entry_id=row.entry_id,
                key=row.customer_id,
                payload=encode(event),
                traceparent=trace,
            )
        )
        booked.append(event)
    session.flush()
    return booked


def _published(row: LedgerEntryRow, flagged: bool) -> LedgerEntryBooked:
    return LedgerEntryBooked(
        event_id=row.entry_id,
        type="ledger_entry.booked",
        occurred_at=db.as_utc(row.occurred_at),
        entry_id=row.entry_id,
        customer_id=row.customer_id,
        kind=EntryKind(row.kind),
        points=row.points,
        cash=row.cash,
        currency=row.currency,
        rule=row.rule,
        campaign_id=row.campaign_id,
        reason=row.reason,
        source_event_id=row.source_event_id,
        referral_id=row.referral_id,
        booked_at=db.as_utc(row.booked_at),
        points_balance=row.points_balance,
        flagged=flagged,
    )


@dataclass
class Applied:
    """What taking one event did."""

    duplicate: bool = False
    entries: list[LedgerEntryBooked] | None = None
    withheld: list[tuple[str, int]] | None = None  # (reason code, points)


def apply(url: str, event: SourceEvent, rules: RewardRules, now: datetime) -> Applied:
    """Take one referral or lifecycle event: decide with the rules, book, all in one
    transaction. An event taken before changes nothing."""
    (result,) = apply_all(url, [(event, current_traceparent())], rules, now)
    if isinstance(result, Exception):
        raise result
    return result


def apply_all(
    url: str,
    events: Sequence[tuple[SourceEvent, str | None]],
    rules: RewardRules,
    now: datetime,
) -> list[Applied | Exception]:
    """Take events, each with the traceparent its entries are relayed under, in order and in
    one transaction: one lock, one read of the campaigns and one commit for a batch, not for
    each event (a quarter of the booking's CPU on PostgreSQL; docs/benchmarks.md, 2026-12-04).
    Each decision reads what the events before it booked, as if they were taken one at a
    time. Returns, for each event, what it did, or the exception its rules failed on (its
    changes undone, the others' kept); a database failure fails the whole call.

    Only when an event's rules fail is the batch rolled back and taken again one event per
    transaction, so that nothing the failed event wrote stays."""
    try:
        with db.serialised_session(url, _LOCK) as session:
            campaigns, taken = _campaigns(session), set[str]()
            return [_take(session, e, trace, rules, campaigns, now, taken) for e, trace in events]
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.warning("an event of a batch of %d failed; taking them one at a time", len(events))
    results: list[Applied | Exception] = []
    for event, trace in events:
        try:
            with db.serialised_session(url, _LOCK) as session:
                results.append(_take(session, event, trace, rules, _campaigns(session), now, set()))
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            results.append(exc)
    return results


def _take(
    session: Session,
    event: SourceEvent,
    trace: str | None,
    rules: RewardRules,
    campaigns: list[Campaign],
    now: datetime,
    taken: set[str],
) -> Applied:
    """One event in the batch's transaction; `taken`: the batch's events taken so far."""
    if event.event_id in taken or session.get(SourceEventRow, event.event_id) is not None:
        return Applied(duplicate=True)
    taken.add(event.event_id)
    session.add(
        SourceEventRow(
            event_id=event.event_id,
            type=event.type,
            occurred_at=event.occurred_at,
            processed_at=now,
        )
    )
    decision = _decide(session, event, rules, campaigns)
    entries = _book(session, decision.bookings, event.event_id, event.occurred_at, now, trace=trace)
    for w in decision.withholdings:
        session.add(
            WithholdingRow(
                customer_id=w.customer_id,
                points=w.points,
                rule=w.rule.value,
                reason_code=w.reason_code.value,
                reason=w.reason[:300],
                source_event_id=event.event_id,
                referral_id=w.referral_id,
                occurred_at=event.occurred_at,
                booked_at=now,
            )
        )
    # What this event wrote is in the database before the next event's reads.
    session.flush()
    return Applied(
        entries=entries,
        withheld=[(w.reason_code.value, w.points) for w in decision.withholdings],
    )


def _decide(
    session: Session, event: SourceEvent, rules: RewardRules, campaigns: list[Campaign]
) -> Decision:
    if isinstance(event, TenureAnniversary):
        return on_anniversary(event, rules, campaigns)
    if isinstance(event, StageChanged):
        matured = session.exec(
            select(LedgerEntryRow.id).where(
                LedgerEntryRow.customer_id == event.customer_id,
                LedgerEntryRow.rule == Rule.LOYALTY_MATURITY.value,
            )
        ).first()
        return on_stage_changed(event, rules, campaigns, matured is not None)
    _track_referral(session, event)
    if event.type == "referral.qualified":
        history = None if event.referrer is None else _history(session, event.referrer, event)
        return on_referral_qualified(event, rules, campaigns, history)
    if event.type == "referral.reversed":
        return on_referral_reversed(event, _standing(session, event.referral_id))
    return Decision()


def _track_referral(session: Session, event: ReferralChanged) -> None:
    status = event.type.split(".", 1)[1]
    row = session.get(ReferralRewardRow, event.referral_id)
    if row is None:
        session.add(
            ReferralRewardRow(
                referral_id=event.referral_id,
                referrer=event.referrer,
                referee=event.referee,
                status=status,
                updated_at=event.occurred_at,
            )
        )
    elif _REFERRAL_RANK[status] >= _REFERRAL_RANK[row.status]:
        row.status, row.referrer, row.updated_at = status, event.referrer, event.occurred_at


def _history(session: Session, referrer: str, event: ReferralChanged) -> ReferrerHistory:
    """The referrer's referral credits made in the event's month and year, each net of its
    later reversal."""
    rows = session.exec(
        select(
            LedgerEntryRow.referral_id,
            LedgerEntryRow.kind,
            LedgerEntryRow.points,
            LedgerEntryRow.occurred_at,
        ).where(
            LedgerEntryRow.customer_id == referrer,
            LedgerEntryRow.rule == Rule.REFERRAL_REFERRER.value,
        )
    ).all()
    credited_at: dict[str | None, datetime] = {}
    net: dict[str | None, int] = defaultdict(int)
    for referral_id, kind, points, occurred_at in rows:
        net[referral_id] += points
        if kind == EntryKind.CREDIT.value:
            credited_at[referral_id] = db.as_utc(occurred_at)
    at = event.occurred_at
    month = sum(net[r] for r, t in credited_at.items() if (t.year, t.month) == (at.year, at.month))
    year = sum(1 for r, t in credited_at.items() if t.year == at.year and net[r] > 0)
    return ReferrerHistory(points_this_month=month, rewarded_this_year=year)


def _standing(session: Session, referral_id: str) -> list[Credited]:
    rows = session.exec(
        select(LedgerEntryRow.customer_id, LedgerEntryRow.rule, func.sum(LedgerEntryRow.points))
        .where(LedgerEntryRow.referral_id == referral_id)
        .group_by(LedgerEntryRow.customer_id, LedgerEntryRow.rule)
        .order_by(LedgerEntryRow.customer_id, LedgerEntryRow.rule)
    ).all()
    return [Credited(customer, Rule(rule), int(points)) for customer, rule, points in rows]


def _campaigns(session: Session) -> list[Campaign]:
    rows = session.exec(select(CampaignRow).where(CampaignRow.active.is_(True))).all()  # type: ignore[attr-defined]
    return [_campaign(row) for row in rows]


def _campaign(row: CampaignRow) -> Campaign:
    return Campaign(
        campaign_id=row.campaign_id,
        name=row.name,
        rule=Rule(row.rule),
        multiplier=row.multiplier,
        bonus_points=row.bonus_points,
        starts_at=db.as_utc(row.starts_at),
        ends_at=db.as_utc(row.ends_at),
        active=row.active,
    )


# -- redemptions and adjustments -------------------------------------------------------------


class RedemptionResult(BaseModel):
    """The answer to a redemption request, stored with its idempotency key."""

    status_code: int
    customer_id: str
    points: int
    entry_id: str | None = None
    points_balance: int | None = None
    error: str | None = None
    message: str | None = None


class IdempotencyKeyReused(Exception):
    """The key was used before for a different request."""


def redeem(
    url: str, customer_id: str, key: str, points: int, what: str, now: datetime
) -> RedemptionResult:
    """Redeem points once per idempotency key: the same key gives the same answer; a key used
    with another request is refused. Serialised with every other write, so two redemptions on
    one balance can never overdraw it."""
    request_hash = hashlib.sha256(f"{points}|{what}".encode()).hexdigest()
    with db.serialised_session(url, _LOCK) as session:
        known = session.get(RedemptionRow, (customer_id, key))
        if known is not None:
            if known.request_hash != request_hash:
                raise IdempotencyKeyReused(key)
            return RedemptionResult.model_validate_json(known.response)
        account = _account(session, customer_id, now)
        try:
            booking = decide_redemption(customer_id, points, account.points, account.flagged, what)
        except RedemptionRefused as refused:
            result = RedemptionResult(
                status_code=409,
                customer_id=customer_id,
                points=points,
                points_balance=account.points,
                error=refused.code,
                message=refused.message,
            )
        else:
            (entry,) = _book(
                session,
                [booking],
                f"redemption:{customer_id}:{key}",
                now,
                now,
                trace=current_traceparent(),
            )
            result = RedemptionResult(
                status_code=201,
                customer_id=customer_id,
                points=points,
                entry_id=entry.entry_id,
                points_balance=entry.points_balance,
            )
        session.add(
            RedemptionRow(
                customer_id=customer_id,
                idempotency_key=key,
                request_hash=request_hash,
                status_code=result.status_code,
                response=result.model_dump_json(),
                created_at=now,
            )
        )
        return result


def adjust(
    url: str, customer_id: str, points: int, reason: str, actor: str, now: datetime
) -> LedgerEntryBooked:
    """An administrator's manual entry, with its reason and author in the ledger and the audit
    trail. Each call is a new entry (its id is random): adjustments are deliberate acts."""
    booking = Booking(customer_id, points, EntryKind.ADJUSTMENT, Rule.ADJUSTMENT, reason)
    with db.serialised_session(url, _LOCK) as session:
        (entry,) = _book(
            session,
            [booking],
            f"adjustment:{uuid.uuid4()}",
            now,
            now,
            actor,
            trace=current_traceparent(),
        )
        _audit(session, now, actor, "adjustment", customer_id, {"points": points, "reason": reason})
        return entry


def clear_flag(url: str, customer_id: str, note: str, actor: str, now: datetime) -> bool:
    """Clear a review flag; False when the account is not flagged."""
    with db.serialised_session(url, _LOCK) as session:
        account = session.get(RewardAccountRow, customer_id)
        if account is None or not account.flagged:
            return False
        previous = account.flag_reason
        account.flagged, account.flag_reason, account.updated_at = False, None, now
        _audit(session, now, actor, "flag_cleared", customer_id, {"note": note, "was": previous})
        return True


def _audit(
    session: Session, now: datetime, actor: str, action: str, target: str, detail: dict[str, Any]
) -> None:
    session.add(
        AuditRow(
            at=now,
            actor=actor,
            action=action,
            target=target,
            detail=orjson.dumps(detail, default=str).decode(),
        )
    )


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


def audit_trail(url: str, limit: int) -> list[AuditEntry]:
    """The newest `limit` manual actions."""
    with db.session_scope(url) as session:
        rows = session.exec(select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)).all()  # type: ignore[union-attr]
        return [
            AuditEntry(
                at=db.as_utc(r.at),
                actor=r.actor,
                action=r.action,
                target=r.target,
                detail=orjson.loads(r.detail),
            )
            for r in rows
        ]


# -- campaigns -------------------------------------------------------------------------------


def create_campaign(url: str, campaign: Campaign, actor: str, now: datetime) -> bool:
    """Store a new campaign; False when its id is taken."""
    with db.serialised_session(url, _LOCK) as session:
        if session.get(CampaignRow, campaign.campaign_id) is not None:
            return False
        session.add(
            CampaignRow(
                **campaign.model_dump(),
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
        )
        _audit(
            session,
            now,
            actor,
            "campaign_created",
            campaign.campaign_id,
            campaign.model_dump(mode="json"),
        )
        return True


def update_campaign(
    url: str, campaign_id: str, changes: dict[str, Any], actor: str, now: datetime
) -> Campaign | None:
    """Apply validated changes to a campaign; None when there is no such campaign."""
    with db.serialised_session(url, _LOCK) as session:
        row = session.get(CampaignRow, campaign_id)
        if row is None:
            return None
        merged = _campaign(row).model_copy(update=changes)
        Campaign.model_validate(merged.model_dump())  # the combination must still be valid
        for name, value in changes.items():
            setattr(row, name, value)
        row.updated_at = now
        _audit(
            session,
            now,
            actor,
            "campaign_updated",
            campaign_id,
            {k: str(v) for k, v in changes.items()},
        )
        return merged


def campaigns(url: str) -> list[Campaign]:
    """Every campaign, active or not."""
    with db.session_scope(url) as session:
        rows = session.exec(select(CampaignRow).order_by(CampaignRow.starts_at)).all()  # type: ignore[arg-type]
        return [_campaign(row) for row in rows]


# -- reads -----------------------------------------------------------------------------------


class PendingRewards(BaseModel):
    referrals: int
    points: int


class RewardsSummary(BaseModel):
    customer_id: str
    points: int
    cash: dict[str, Decimal]
    pending: PendingRewards
    withheld_points: int
    flagged: bool
    flag_reason: str | None


def summary(url: str, customer_id: str, rules: RewardRules) -> RewardsSummary | None:
    """Balance by unit, what is pending and withheld, and the review flag; None for a customer
    the ledger has never seen."""
    with db.session_scope(url) as session:
        account = session.get(RewardAccountRow, customer_id)
        referrals = session.exec(
            select(ReferralRewardRow).where(
                (ReferralRewardRow.referrer == customer_id)
                | (ReferralRewardRow.referee == customer_id),
                ReferralRewardRow.status.in_(PENDING_STATUSES),  # type: ignore[attr-defined]
            )
        ).all()
        if account is None and not referrals:
            return None
        cash = session.exec(
            select(LedgerEntryRow.currency, func.sum(LedgerEntryRow.cash))
            .where(LedgerEntryRow.customer_id == customer_id, LedgerEntryRow.cash.is_not(None))  # type: ignore[union-attr]
            .group_by(LedgerEntryRow.currency)
        ).all()
        withheld = session.exec(
            select(func.coalesce(func.sum(WithholdingRow.points), 0)).where(
                WithholdingRow.customer_id == customer_id
            )
        ).one()
        pending_points = sum(
            (rules.referrer_points if r.referrer == customer_id else 0)
            + (rules.referee_points if r.referee == customer_id else 0)
            for r in referrals
        )
        return RewardsSummary(
            customer_id=customer_id,
            points=account.points if account else 0,
            cash={str(c): Decimal(v or 0) for c, v in cash},
            pending=PendingRewards(referrals=len(referrals), points=pending_points),
            withheld_points=int(withheld),
            flagged=bool(account and account.flagged),
            flag_reason=account.flag_reason if account else None,
        )


class LedgerPage(BaseModel):
    customer_id: str
    entries: list[LedgerEntryBooked]
    # Pass as `after` for the next page; None on the last page.
    next_after: int | None


def entries(url: str, customer_id: str, after: int, limit: int) -> LedgerPage:
    """A customer's entries in booking order, `limit` at a time."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(LedgerEntryRow)
            .where(LedgerEntryRow.customer_id == customer_id, LedgerEntryRow.id > after)  # type: ignore[operator]
            .order_by(LedgerEntryRow.id)  # type: ignore[arg-type]
            .limit(limit + 1)
        ).all()
        page = rows[:limit]
        return LedgerPage(
            customer_id=customer_id,
            entries=[_published(r, False) for r in page],
            next_after=page[-1].id if len(rows) > limit else None,
        )


class RuleTotal(BaseModel):
    rule: str
    kind: str
    entries: int
    points: int


class LedgerTotals(BaseModel):
    """The whole ledger at a glance, for operations."""

    by_rule: list[RuleTotal]
    withheld_points_by_reason: dict[str, int]
    accounts: int
    accounts_flagged: int
    outbox_backlog: int


def totals(url: str) -> LedgerTotals:
    """Entries and points by rule and kind, what caps withheld, accounts, the outbox backlog."""
    with db.session_scope(url) as session:
        by_rule = session.exec(
            select(
                LedgerEntryRow.rule,
                LedgerEntryRow.kind,
                func.count(),
                func.sum(LedgerEntryRow.points),
            )
            .group_by(LedgerEntryRow.rule, LedgerEntryRow.kind)
            .order_by(LedgerEntryRow.rule, LedgerEntryRow.kind)
        ).all()
        withheld = session.exec(
            select(WithholdingRow.reason_code, func.sum(WithholdingRow.points)).group_by(
                WithholdingRow.reason_code
            )
        ).all()
        accounts = session.exec(select(func.count()).select_from(RewardAccountRow)).one()
        flagged = session.exec(
            select(func.count())
            .select_from(RewardAccountRow)
            .where(col(RewardAccountRow.flagged).is_(True))
        ).one()
    return LedgerTotals(
        by_rule=[RuleTotal(rule=r, kind=k, entries=n, points=int(p)) for r, k, n, p in by_rule],
        withheld_points_by_reason={str(r): int(p) for r, p in withheld},
        accounts=int(accounts),
        accounts_flagged=int(flagged),
        outbox_backlog=outbox_backlog(url),
    )


@dataclass(frozen=True)
class BalanceCheck:
    """Accounts whose maintained balance differs from the sum of their entries."""

    accounts: int
    mismatches: dict[str, tuple[int, int]]  # customer -> (maintained, summed)


def check_balances(url: str) -> BalanceCheck:
    """Compare every maintained balance with the sum of that customer's entries."""
    with db.session_scope(url) as session:
        summed = dict(
            session.exec(
                select(LedgerEntryRow.customer_id, func.sum(LedgerEntryRow.points)).group_by(
                    LedgerEntryRow.customer_id
                )
            ).all()
        )
        maintained = dict(
            session.exec(select(RewardAccountRow.customer_id, RewardAccountRow.points)).all()
        )
    mismatches = {
        c: (maintained.get(c, 0), int(summed.get(c, 0)))
        for c in set(summed) | set(maintained)
        if maintained.get(c, 0) != int(summed.get(c, 0))
    }
    return BalanceCheck(len(maintained), mismatches)


# -- the outbox ------------------------------------------------------------------------------


def take_lease(url: str, holder: str, now: datetime, seconds: float) -> bool:
    """Take or renew the relay lease; False while another live holder has it."""
    expires_at = now + timedelta(seconds=seconds)
    with db.serialised_session(url, _LOCK) as session:
        lease = session.get(OutboxLeaseRow, "relay")
        if lease is None:
            session.add(OutboxLeaseRow(name="relay", holder=holder, expires_at=expires_at))
        elif lease.holder != holder and db.as_utc(lease.expires_at) > now:
            return False
        else:
            lease.holder, lease.expires_at = holder, expires_at
        return True


def outbox_identity(url: str) -> str:
    """The id this database's outbox tags its records with (set by migration 0004)."""
    with db.session_scope(url) as session:
        found = session.execute(
            text("SELECT value FROM rapport_installation WHERE key = 'rewards_outbox_id'")
        ).scalar_one()
        return str(found)


def unpublished(url: str, limit: int, through: int | None = None) -> list[OutboxRow]:
    """The oldest outbox rows not yet published (with seq at most `through`, if given)."""
    with db.session_scope(url) as session:
        query = select(OutboxRow).where(OutboxRow.published_at.is_(None))  # type: ignore[union-attr]
        if through is not None:
            query = query.where(OutboxRow.seq <= through)  # type: ignore[operator]
        rows = session.exec(query.order_by(OutboxRow.seq).limit(limit)).all()  # type: ignore[arg-type]
        for row in rows:
            session.expunge(row)
        return list(rows)


def mark_published(url: str, seqs: list[int], now: datetime) -> None:
    """Record that these outbox rows are on the topic."""
    if not seqs:
        return
    with db.session_scope(url) as session:
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.seq.in_(seqs))  # type: ignore[union-attr]
            .values(published_at=now)
        )


def outbox_backlog(url: str) -> int:
    """How many entries wait for the relay."""
    with db.session_scope(url) as session:
        return int(
            session.exec(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.published_at.is_(None))  # type: ignore[union-attr]
            ).one()
        )


def utcnow() -> datetime:
    """Booking time (not a rule input: rules use event time)."""
    return datetime.now(UTC)
