"""The rewards ledger in SQL: append-only entries, the balances they add up to, what caps
withheld, campaigns, redemptions, the audit trail and the transactional outbox. The tables and
their queries; what to book is decided in `service.py`, which reads a batch's facts here
(`read_facts`, `read_accounts`) and hands back the rows to write (`write`).

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
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import DateTime, Numeric, Text, UniqueConstraint, func, insert, text, update
from sqlalchemy import select as sa_select
from sqlmodel import Column, Field, Session, SQLModel, col, select

from schemas.lifecycle import StageChanged, TenureAnniversary
from schemas.referral import ReferralChanged
from schemas.rewards import EntryKind, LedgerEntryBooked
from services.rewards.domain import Campaign, ReferrerCredit, RewardRules, Rule
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
            col(SourceEventRow.event_id).in_(sorted({e.event_id for e in events}))
        )
    ).all()
    matured = (
        session.exec(
            select(LedgerEntryRow.customer_id).where(
                col(LedgerEntryRow.customer_id).in_(maturing),
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
                col(LedgerEntryRow.customer_id).in_(referrers),
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
            .where(col(LedgerEntryRow.referral_id).in_(reversed_ids))
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
                    col(ReferralRewardRow.referral_id).in_(referral_ids)
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
            select(RewardAccountRow).where(col(RewardAccountRow.customer_id).in_(sorted(customers)))
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
    for account in writes.accounts.values():
        account.stored = True
    for referral in writes.referrals.values():
        referral.stored = True


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


# -- redemptions, flags and the audit trail ----------------------------------------------------


def known_redemption(session: Session, customer_id: str, key: str) -> RedemptionRow | None:
    """The answer stored for an idempotency key, if the key came before."""
    return session.get(RedemptionRow, (customer_id, key))


def add_redemption(session: Session, row: RedemptionRow) -> None:
    """Store the answer given to an idempotency key."""
    session.add(row)


def clear_flag(url: str, customer_id: str, note: str, actor: str, now: datetime) -> bool:
    """Clear a review flag; False when the account is not flagged."""
    with db.serialised_session(url, LOCK) as session:
        account = session.get(RewardAccountRow, customer_id)
        if account is None or not account.flagged:
            return False
        previous = account.flag_reason
        account.flagged, account.flag_reason, account.updated_at = False, None, now
        audit(session, now, actor, "flag_cleared", customer_id, {"note": note, "was": previous})
        return True


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
    with db.serialised_session(url, LOCK) as session:
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
        audit(
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
    with db.serialised_session(url, LOCK) as session:
        row = session.get(CampaignRow, campaign_id)
        if row is None:
            return None
        merged = _campaign(row).model_copy(update=changes)
        Campaign.model_validate(merged.model_dump())  # the combination must still be valid
        for name, value in changes.items():
            setattr(row, name, value)
        row.updated_at = now
        audit(
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
            entries=[published(r.model_dump(), False) for r in page],
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
    with db.serialised_session(url, LOCK) as session:
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
