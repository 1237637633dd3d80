"""The rewards ledger in SQL: append-only entries, the balances they add up to, what caps
withheld, campaigns, redemptions, the audit trail and the transactional outbox. The tables and
their queries and writes, deciding nothing: `service.py` reads a batch's facts here
(`read_facts`, `read_accounts`), asks the rules, and hands back the rows to write (`write`).
What the API reads is in `read_model.py`, the outbox's queries beside its relay.

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

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import DateTime, Numeric, Text, UniqueConstraint, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import Column, Field, Session, SQLModel, col, select

from schemas.lifecycle import StageChanged, TenureAnniversary
from schemas.referral import ReferralChanged
from schemas.rewards import EntryKind, LedgerEntryBooked
from services.rewards.domain import Campaign, ReferrerCredit, Rule
from services.runtime import db

log = logging.getLogger(__name__)
_TIME = DateTime(timezone=True)
LOCK = "rapport-rewards-ledger"
_ID_NAMESPACE = uuid.UUID("2c4b8a61-93f5-4c0e-bb39-5e3f6d1a7c20")
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


# -- what a batch reads and writes -----------------------------------------------------------


@dataclass
class Account:
    """A reward account as the transaction sees it; `stored`: the row exists already."""

    customer_id: str
    points: int = 0
    flagged: bool = False
    flag_reason: str | None = None
    stored: bool = False


@dataclass
class ReferralStatus:
    """Where a referral stands; `stored`: the row exists already."""

    referral_id: str
    referrer: str | None
    referee: str
    status: str
    updated_at: datetime
    stored: bool = False


@dataclass
class Facts:
    """What the rules of a batch of events read, all in one go: which events were taken, who
    has had the maturity reward, each referrer's referral credits and reversals, and each
    referral's entries (what a clawback reverses) and status."""

    campaigns: list[Campaign]
    taken: set[str]
    matured: set[str]
    referrer_credits: dict[str, list[ReferrerCredit]]
    referral_entries: dict[str, list[tuple[str, str, int]]]  # (customer, rule, points)
    referrals: dict[str, ReferralStatus]


def read_facts(session: Session, events: Sequence[SourceEvent]) -> Facts:
    """The facts the events' rules need, one query per kind of fact."""
    referral_events = [e for e in events if isinstance(e, ReferralChanged)]
    referral_ids = sorted({e.referral_id for e in referral_events})
    referrers = sorted(
        {e.referrer for e in referral_events if e.type == "referral.qualified" and e.referrer}
    )
    reversed_ids = sorted({e.referral_id for e in referral_events if e.type == "referral.reversed"})
    maturing = sorted({e.customer_id for e in events if isinstance(e, StageChanged)})
    taken = session.exec(
        select(SourceEventRow.event_id).where(
            db.among(session, SourceEventRow.event_id, sorted({e.event_id for e in events}))
        )
    ).all()
    matured = (
        session.exec(
            select(LedgerEntryRow.customer_id).where(
                db.among(session, LedgerEntryRow.customer_id, maturing),
                LedgerEntryRow.rule == Rule.LOYALTY_MATURITY.value,
            )
        ).all()
        if maturing
        else []
    )
    credits: dict[str, list[ReferrerCredit]] = {r: [] for r in referrers}
    if referrers:
        for customer, referral_id, kind, points, occurred_at in session.execute(
            sa_select(
                col(LedgerEntryRow.customer_id),
                col(LedgerEntryRow.referral_id),
                col(LedgerEntryRow.kind),
                col(LedgerEntryRow.points),
                col(LedgerEntryRow.occurred_at),
            )
            .where(
                db.among(session, LedgerEntryRow.customer_id, referrers),
                col(LedgerEntryRow.rule) == Rule.REFERRAL_REFERRER.value,
            )
            .order_by(col(LedgerEntryRow.id))
        ).all():
            credits[customer].append(
                ReferrerCredit(referral_id, EntryKind(kind), points, db.as_utc(occurred_at))
            )
    entries: dict[str, list[tuple[str, str, int]]] = {r: [] for r in reversed_ids}
    if reversed_ids:
        for referral_id, customer, rule, points in session.exec(
            select(
                LedgerEntryRow.referral_id,
                LedgerEntryRow.customer_id,
                LedgerEntryRow.rule,
                LedgerEntryRow.points,
            )
            .where(db.among(session, LedgerEntryRow.referral_id, reversed_ids))
            .order_by(col(LedgerEntryRow.id))
        ).all():
            entries[str(referral_id)].append((customer, rule, points))
    referrals = {
        row.referral_id: ReferralStatus(
            row.referral_id, row.referrer, row.referee, row.status, row.updated_at, stored=True
        )
        for row in (
            session.exec(
                select(ReferralRewardRow).where(
                    db.among(session, ReferralRewardRow.referral_id, referral_ids)
                )
            ).all()
            if referral_ids
            else []
        )
    }
    return Facts(
        campaigns=read_campaigns(session),
        taken=set(taken),
        matured=set(matured),
        referrer_credits=credits,
        referral_entries=entries,
        referrals=referrals,
    )


def read_accounts(session: Session, customers: set[str]) -> dict[str, Account]:
    """The customers' accounts, a new empty one for a customer without."""
    accounts = {c: Account(c) for c in customers}
    if customers:
        for row in session.exec(
            select(RewardAccountRow).where(
                db.among(session, RewardAccountRow.customer_id, sorted(customers))
            )
        ).all():
            accounts[row.customer_id] = Account(
                row.customer_id, row.points, row.flagged, row.flag_reason, stored=True
            )
    return accounts


@dataclass
class Writes:
    """The rows a transaction adds or changes, written together at its end (`write`), each
    table's in the order they were made: the entries' ids and the outbox's sequence numbers
    follow booking order."""

    source_events: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    withholdings: list[dict[str, Any]] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    referrals: dict[str, ReferralStatus] = field(default_factory=dict)


def write(session: Session, writes: Writes, now: datetime) -> None:
    """Every row of the transaction: inserts as one statement per table (executemany), the
    changed accounts and referrals as bulk updates by primary key."""
    inserts: list[tuple[type[SQLModel], list[dict[str, Any]]]] = [
        (SourceEventRow, writes.source_events),
        (LedgerEntryRow, writes.entries),
        (OutboxRow, writes.outbox),
        (WithholdingRow, writes.withholdings),
    ]
    updates: list[tuple[type[SQLModel], list[dict[str, Any]]]] = []
    changes: list[tuple[type[SQLModel], list[tuple[bool, dict[str, Any]]]]] = [
        (RewardAccountRow, [_account_row(a, now) for a in writes.accounts.values()]),
        (ReferralRewardRow, [_referral_row(r) for r in writes.referrals.values()]),
    ]
    for model, changed in changes:
        inserts.append((model, [row for stored, row in changed if not stored]))
        updates.append((model, [row for stored, row in changed if stored]))
    for model, rows in inserts:
        if rows:
            session.execute(insert(model), rows)
    for model, rows in updates:
        if rows:
            session.execute(update(model), rows)


def _account_row(account: Account, now: datetime) -> tuple[bool, dict[str, Any]]:
    return account.stored, {
        "customer_id": account.customer_id,
        "points": account.points,
        "flagged": account.flagged,
        "flag_reason": account.flag_reason,
        "updated_at": now,
    }


def _referral_row(referral: ReferralStatus) -> tuple[bool, dict[str, Any]]:
    return referral.stored, {
        "referral_id": referral.referral_id,
        "referrer": referral.referrer,
        "referee": referral.referee,
        "status": referral.status,
        "updated_at": referral.updated_at,
    }


def published(entry: dict[str, Any], flagged: bool) -> LedgerEntryBooked:
    """The event an entry's row is published as."""
    return LedgerEntryBooked(
        event_id=entry["entry_id"],
        type="ledger_entry.booked",
        occurred_at=db.as_utc(entry["occurred_at"]),
        entry_id=entry["entry_id"],
        customer_id=entry["customer_id"],
        kind=EntryKind(entry["kind"]),
        points=entry["points"],
        cash=entry.get("cash"),
        currency=entry.get("currency"),
        rule=entry["rule"],
        campaign_id=entry["campaign_id"],
        reason=entry["reason"],
        source_event_id=entry["source_event_id"],
        referral_id=entry["referral_id"],
        booked_at=db.as_utc(entry["booked_at"]),
        points_balance=entry["points_balance"],
        flagged=flagged,
    )


def read_campaigns(session: Session) -> list[Campaign]:
    """The active campaigns."""
    rows = session.exec(select(CampaignRow).where(CampaignRow.active.is_(True))).all()  # type: ignore[attr-defined]
    return [campaign_of(row) for row in rows]


def campaign_of(row: CampaignRow) -> Campaign:
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


# -- redemptions, flags and the audit trail ----------------------------------------------------


def known_redemption(session: Session, customer_id: str, key: str) -> RedemptionRow | None:
    """The answer stored for an idempotency key, if the key came before."""
    return session.get(RedemptionRow, (customer_id, key))


def add_redemption(session: Session, row: RedemptionRow) -> None:
    """Store the answer given to an idempotency key."""
    session.add(row)


def account_row(session: Session, customer_id: str) -> RewardAccountRow | None:
    """A customer's account row, to change in the transaction."""
    return session.get(RewardAccountRow, customer_id)


def campaign_row(session: Session, campaign_id: str) -> CampaignRow | None:
    """A campaign's row, to change in the transaction."""
    return session.get(CampaignRow, campaign_id)


def add_campaign(session: Session, campaign: Campaign, actor: str, now: datetime) -> None:
    """Store a new campaign."""
    session.add(
        CampaignRow(**campaign.model_dump(), created_by=actor, created_at=now, updated_at=now)
    )


def audit(
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


def utcnow() -> datetime:
    """Booking time (not a rule input: rules use event time)."""
    return datetime.now(UTC)
